# Cold: the agent's side of app.json (the boot stub's file, see appdir.py): the report of the
# running version and its update state that rides along with the next post ("agent" in the
# counts body), the confirmation of a version on trial by its first successful upload, and the
# "update" an answer of the server may carry, which loads the updater (ota.py).
import json

import cold
import flash

STATE = "app.json"


def load():
    try:
        return json.loads(flash.read(STATE))
    except (TypeError, ValueError):
        return {}


def note(ver, state=None, reason=None, target=None):
    # The ',"agent":{...}' bytes for the counts body.
    d = {"version": ver}
    if state:
        d["update"] = state
    if reason:
        d["reason"] = reason
    if target:
        d["target"] = target
    return b',"agent":' + json.dumps(d).encode()


def boot(key):
    # [running version, note for the next post, version not to try again, release key]: the
    # boot's report: rolled back (and why), a version on trial (installed), or just the version.
    s = load()
    ver = s.get("ver", "0.0.0")
    if "fell" in s:
        n = note(ver, "rolled_back", s["fell"], s.get("bad"))
    elif "try" in s:
        n = note(ver, "installed")
    else:
        n = note(ver)
    return [ver, n, s.get("bad"), key]


def after(up, log, feed):
    # A post went through: what it confirms, and the update its answer offers.
    app = up.app
    sent = app[1]
    app[1] = None
    if not up.uploaded:
        up.uploaded = True
        flash.remove("boots")  # this boot worked: reset safemode's crash-loop counter
    if sent and (b'"installed"' in sent or b'"rolled_back"' in sent):
        s = load()
        if s.pop("try", None) is not None:
            # RFC-free but essential: the first successful upload confirms the version on trial.
            flash.write_atomic(STATE, json.dumps(s).encode())
            app[1] = note(app[0], "confirmed")
            log("update %s confirmed" % app[0])
        elif s.pop("fell", None) is not None:
            flash.write_atomic(STATE, json.dumps(s).encode())  # reported: keep only "bad"
    resp = bytes(up.conn.resp)
    if b'"update"' not in resp:
        return
    try:
        want = json.loads(resp)["update"]["version"]
    except (ValueError, KeyError, TypeError):
        return
    if not isinstance(want, str) or want in (app[0], app[2]):
        return
    import ota

    try:
        why = ota.run(up, want, log, feed)
    finally:
        cold.drop(ota)
    if why:
        log("update %s refused: %s" % (want, why))
        app[1] = note(app[0], "refused", why, want)
        app[2] = want  # not again until a reboot, or the server offers another
