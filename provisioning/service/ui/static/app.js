// parkfleet dashboard: progressive enhancement only; every page works without this file.
// Live totals from Server-Sent Events, relative times that keep ticking, the copy button.
"use strict";
(function () {
  function ago(ts) {
    if (!ts) return "never";
    var age = Math.max(0, Date.now() / 1000 - ts);
    var units = [["d", 86400], ["h", 3600], ["min", 60]];
    for (var i = 0; i < units.length; i++) {
      if (age >= units[i][1]) return Math.floor(age / units[i][1]) + " " + units[i][0] + " ago";
    }
    return Math.floor(age) + " s ago";
  }
  function tick() {
    document.querySelectorAll("time[data-ts]").forEach(function (el) {
      var ts = parseFloat(el.dataset.ts);
      if (ts) el.textContent = ago(ts);
    });
  }
  // Fields are found by comparing data attributes, never by building selectors from values.
  function within(root, attr, value) {
    return Array.prototype.filter.call(root.querySelectorAll("[" + attr + "]"), function (el) {
      return el.getAttribute(attr) === value;
    });
  }
  function set(root, field, text) {
    within(root, "data-field", field).forEach(function (el) { el.textContent = String(text); });
  }
  function applyLot(ev) {
    within(document, "data-lot", ev.lot).forEach(function (root) {
      set(root, "cars", ev.cars);
      if (ev.free !== undefined) set(root, "free", ev.free);
      within(root, "data-field", "meter").forEach(function (m) { m.value = ev.cars; m.textContent = ev.cars; });
      within(root, "data-field", "updated").forEach(function (t) {
        var last = 0;
        (ev.boards || []).forEach(function (b) { if (b.received_at > last) last = b.received_at; });
        if (last) { t.dataset.ts = String(last); t.textContent = ago(last); }
      });
    });
    (ev.boards || []).forEach(function (b) {
      within(document, "data-device", b.device_id).forEach(function (row) {
        if (b.cars !== null) set(row, "cars", b.cars);
        within(row, "data-field", "seen").forEach(function (t) {
          t.dataset.ts = String(b.last_seen_at); t.textContent = ago(b.last_seen_at);
        });
      });
    });
  }
  function connect(url) {
    var status = document.querySelector("[data-live-status]");
    var source = new EventSource(url);
    source.addEventListener("open", function () { if (status) status.textContent = "live"; });
    source.addEventListener("error", function () { if (status) status.textContent = "reconnecting…"; });
    source.addEventListener("lot", function (e) {
      try { applyLot(JSON.parse(e.data)); } catch (err) { /* a bad frame: wait for the next */ }
    });
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-copy]") : null;
    if (!button) return;
    var field = document.getElementById(button.dataset.copy);
    if (!field) return;
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard) navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    else { document.execCommand("copy"); done(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var url = document.body.dataset.live;
    if (url && window.EventSource) connect(url);
    tick();
    setInterval(tick, 5000);
  });
})();
