# Unit tests of the device modules, run by the MicroPython Unix port (not by CPython):
#   micropython units.py [name ...]   with MICROPYPATH=device:tools/unixport:.frozen, cwd = scratch
# Prints "ok <name>" or "FAIL <name>: <error>" per test; tests/device/test_units.py drives it.
import os
import sys
import time

from casesrun import expect, main


def fresh(name):
    # A clean scratch directory per test, so flash files never leak between tests.
    os.chdir(_ROOT)
    try:
        os.mkdir(name)
    except OSError:
        pass
    os.chdir(name)
    for f in os.listdir():
        if f != "spool.d":
            os.remove(f)
    try:
        for f in os.listdir("spool.d"):
            os.remove("spool.d/" + f)
    except OSError:
        pass


# ---------------------------------------------------------------- spool


def test_spool_append_peek_ack_and_reboot():
    from spool import Spool

    s = Spool(100)
    for i in range(10):
        expect(s.append(i, 1700000000 + i) == i, "seq is contiguous from 0")
    got = []
    n = s.peek(4, lambda seq, cars, ts: got.append((seq, cars, ts)))
    expect(n == 4 and got[0] == (0, 0, 1700000000) and got[3][0] == 3, "oldest first")
    s.ack(3, got[3][1])
    s2 = Spool(100)  # a reboot
    expect((s2.head, s2.next_seq, s2.depth()) == (4, 10, 6), "state rebuilt from flash")
    got = []
    s2.peek(100, lambda seq, cars, ts: got.append(seq))
    expect(got == [4, 5, 6, 7, 8, 9], "resends only what was not acknowledged")
    expect(s2.last == 9, "the newest reading is known at boot")


def test_spool_gate_counters_survive_reboot_and_power_cut():
    # A gate board's (in, out) restored from the newest record, delivered or not; wrap-safe.
    from assemble import make_sensor
    from spool import REC, Spool

    s = Spool(100)
    s.append((7, 3), 1700000000)
    s.append((0xFFFFFFFF, 4), None)
    got = []
    s.peek(5, lambda seq, v, ts: got.append((seq, v, ts)))
    expect(got == [(0, (7, 3), 1700000000), (1, (0xFFFFFFFF, 4), None)], "gate records: %r" % got)
    s.ack(1, (0xFFFFFFFF, 4))
    s.append((0, 5), None)  # wrapped at 2**32, never clamped
    with open("spool.d/0", "ab") as f:
        f.write(b"\x01" * (REC // 2))  # a power cut mid-append
    s2 = Spool(100)
    expect((s2.next_seq, s2.last) == (3, (0, 5)), "newest intact record: %r" % (s2.last,))
    sensor = make_sensor({"kind": "gate", "pin_a": 20, "pin_b": 21, "debounce_ms": 0}, s2.last)
    expect(sensor.read() == (0, 5), "the gate goes on from its stored counters")
    s2.ack(2, (0, 5))
    for f in os.listdir("spool.d"):
        if f != "ptr":
            os.remove("spool.d/" + f)  # all delivered and trimmed: the pointer alone remembers
    expect(Spool(100).last == (0, 5), "counters from the pointer")


def test_spool_keeps_seq_from_a_pointer_before_gate_readings():
    import struct

    from spool import Spool

    if "spool.d" not in os.listdir():
        os.mkdir("spool.d")
    with open("spool.d/ptr", "wb") as f:
        f.write(struct.pack("<III", 500, 2, 9))  # the 12-byte pointer of earlier agents
    s = Spool(100)
    expect((s.head, s.dropped, s.next_seq, s.last) == (500, 2, 500, 9), "seq goes on")


def test_file_sensor_simulates_both_kinds():
    from sensor import FileSensor

    s = FileSensor("cars.txt")
    with open("cars.txt", "w") as f:
        f.write("12\n")
    expect(s.read() == 12, "zone")
    with open("cars.txt", "w") as f:
        f.write("10 4\n")
    expect(s.read() == (10, 4), "gate")
    with open("cars.txt", "w") as f:
        f.write("x")
    expect(s.read() is None, "garbage: no reading")


def test_spool_seq_survives_full_drain_across_segments():
    from spool import Spool

    s = Spool(1000)
    for i in range(600):
        s.append(1, None)
    s.ack(599, 1)
    expect(sorted(os.listdir("spool.d")) == ["3", "ptr"], "acknowledged segments are deleted")
    s2 = Spool(1000)
    expect(s2.next_seq == 600 and s2.depth() == 0, "seq continues after an empty spool")
    expect(s2.append(2, None) == 600, "next seq")
    got = []
    s2.peek(5, lambda seq, cars, ts: got.append((seq, cars, ts)))
    expect(got == [(600, 2, None)], "ts null round-trips")


def test_spool_bounded_drops_oldest_and_counts():
    from spool import Spool

    s = Spool(50)
    for i in range(80):
        s.append(i, None)
    expect(s.depth() == 50 and s.dropped == 30 and s.head == 30, "bounded, dropped counted")
    got = []
    s.peek(1, lambda seq, cars, ts: got.append(seq))
    expect(got == [30], "oldest kept is seq 30")
    expect(Spool(50).dropped == 30, "dropped count persists")


def test_spool_torn_append_is_cut_off():
    from spool import Spool

    s = Spool(100)
    for i in range(5):
        s.append(i, None)
    with open("spool.d/0", "ab") as f:
        f.write(b"\x05\x00\x00")  # power cut in the middle of the sixth record
    s2 = Spool(100)
    expect(s2.next_seq == 5, "torn record ignored")
    expect(os.stat("spool.d/0")[6] == 5 * 20, "torn tail removed so appends stay aligned")
    expect(s2.append(7, None) == 5, "the lost reading's seq is reused: no gap")


def test_spool_unreadable_records_are_skipped_and_counted():
    from spool import Spool

    s = Spool(100)
    for i in range(5):
        s.append(i, None)
    os.remove("spool.d/0")  # a lost segment under the pointer
    expect(s.peek(10, lambda *r: None) == 0, "nothing readable")
    expect(s.skip() == 5, "all five given up")
    expect(s.depth() == 0 and s.dropped == 5, "counted as dropped")
    expect(s.append(1, None) == 5, "seq goes on")


def test_spool_pointer_rename_interrupted():
    from spool import Spool

    s = Spool(100)
    for i in range(5):
        s.append(i, None)
    s.ack(2, 2)
    os.rename("spool.d/ptr", "spool.d/ptr.tmp")  # power cut between remove and rename (FAT)
    expect(Spool(100).head == 3, "pointer read from the temp file")


# ---------------------------------------------------------------- backoff


def test_backoff_full_jitter_and_cap():
    from backoff import delay

    for i in range(12):
        d = delay(2, 60, i + 1)
        ceiling = min(60, 2 * (1 << i)) * 1000
        expect(200 <= d <= ceiling, "delay %d within [base/10, %d]" % (d, ceiling))
    delays = [delay(2, 60, n) for n in range(13, 63)]
    expect(max(delays) <= 60000 and min(delays) < 30000, "capped and jittered")
    expect(delay(2, 60, 1) <= 2000, "a first failure (or one after a success) starts over")


def test_backoff_honours_retry_after_with_jitter():
    from backoff import delay

    delays = [delay(1, 5, n, 20) for n in range(1, 31)]
    expect(min(delays) >= 20000, "never earlier than Retry-After")
    expect(max(delays) <= 25000 and len(set(delays)) > 5, "jitter up to a quarter on top")
    expect(delay(1, 5, 31, 10**9) <= 3600 * 1250, "absurd Retry-After capped at an hour")


def test_supervisor_counts_failures_and_backs_off():
    import http

    from uplink import Uplink

    class Conn:
        date = None

    lines = []
    up = Uplink(Conn(), "/v1/counts", None, None, 20, 1000, 2, 60, 900, lines.append)
    for _ in range(62):
        expect(not up.failed(OSError(104), up.conn, False), "an upload failure backs off")
    expect(up.failures == 62 and up.auth_failures == 0, "failures counted")
    expect(up.waiting(time.ticks_ms()) and up.down_since is not None, "waiting, out of reach")
    expect(up.failed(http.HTTPError(413), up.conn, False) and up.batch == 10, "413: half a batch")
    expect(not up.failed(http.HTTPError(403), up.conn, False), "403 backs off")
    expect(up.auth_failures == 1 and up.down_since is None, "by the credentials' cap; answered")
    expect("backoff" in lines[-1] and "(failure 1)" in lines[-1], "logged: " + lines[-1])


# ---------------------------------------------------------------- gate sensor


def _pass(g, order, t0, step=100):
    # Trip and release beams in the given order: ("A+", "B+", "A-", "B-") etc.
    t = t0
    for ev in order:
        g.event(0 if ev[0] == "A" else 1, ev[1] == "+", t)
        t += step
    return t


def test_gate_counts_in_and_out():
    from gate import Gate

    g = Gate(5, 1, debounce_ms=20)
    t = _pass(g, ("A+", "B+", "A-", "B-"), 1000)  # in
    t = _pass(g, ("A+", "B+", "A-", "B-"), t)  # in
    t = _pass(g, ("B+", "A+", "B-", "A-"), t)  # out
    expect((g.ins, g.outs) == (7, 2), "cumulative counters from the restored ones")


def test_gate_backing_out_does_not_count():
    from gate import Gate

    g = Gate(debounce_ms=20)
    t = _pass(g, ("A+", "A-"), 1000)  # a pedestrian on the street side
    t = _pass(g, ("A+", "B+", "B-", "A-"), t)  # drove in halfway, reversed
    expect(g.ins == 0 and g.outs == 0, "no count")


def test_gate_never_clamped_and_wraps():
    from gate import Gate

    g = Gate(0xFFFFFFFF, 0, debounce_ms=20)
    t = _pass(g, ("B+", "A+", "B-", "A-"), 1000)
    _pass(g, ("A+", "B+", "A-", "B-"), t)
    expect((g.ins, g.outs) == (0, 1), "an exit lane counts outs; in wraps at 2**32")


def test_gate_debounce_and_sync():
    from gate import Gate

    g = Gate(debounce_ms=50)
    g.event(0, True, 1000)
    g.event(0, False, 1005)  # bounce: ignored
    g.event(0, True, 1010)
    expect(g.active[0], "bounce ignored, beam still broken")
    g.event(1, True, 1200)
    g.event(0, False, 1300)
    g.event(1, False, 1310)
    expect(g.ins == 1, "counted in")
    g.event(1, True, 1320)  # a real trip inside the debounce window: missed
    expect(not g.active[1], "missed edge")
    g.sync(False, True, 1500)  # the main loop reads the real levels
    expect(g.active[1] and g.ins == 1, "sync restores the true level without a count")


def test_gate_sensor_on_simulated_pins():
    import machine
    from assemble import make_sensor

    s = make_sensor({"kind": "gate", "pin_a": 12, "pin_b": 13, "debounce_ms": 0}, (5, 2))
    # active_low (default): a broken beam pulls the input low; pull-ups idle high.
    for pin, level in ((12, 0), (13, 0), (12, 1), (13, 1)):
        machine.Pin.sim_set(pin, level)
        time.sleep_ms(2)
    expect(s.read() == (6, 2), "IRQ handlers counted a car in from the restored counters")


# ---------------------------------------------------------------- config


def _cfg(**kw):
    c = {
        "device_id": "dev_1",
        "client_secret": "TOPSECRETVALUE",
        "token_url": "http://localhost:1/oauth/token",
        "audience": "parkfleet-ingest",
        "ingest_url": "http://localhost:1",
        "lot": "L1",
        "interval_s": 60,
        "sensor": {"kind": "file", "path": "cars.txt"},
        "wifi": {"ssid": "lot", "password": "pw"},
    }
    for k, v in kw.items():
        if v is None:
            del c[k]
        else:
            c[k] = v
    return c


def _config_error(c):
    import config

    try:
        config.validate(c)
    except ValueError as e:
        msg = str(e)
        expect("TOPSECRET" not in msg, "secret not in the message")
        return msg
    return None


def test_config_defaults_and_errors():
    import config

    c = config.validate(_cfg())
    expect(c["spool_max"] == 4096 and c["batch_max"] == 20 and c["ca_cert"] is None, "defaults")
    expect(_config_error(_cfg(lot=None)) == "missing key 'lot'", "missing key")
    expect(_config_error(_cfg(colour="red")) == "unknown key 'colour'", "unknown key")
    expect("interval_s" in _config_error(_cfg(interval_s="60")), "wrong type")
    expect("client_secret" in _config_error(_cfg(client_secret=5)), "secret type, not value")
    expect("ingest_url" in _config_error(_cfg(ingest_url="ftp://x")), "bad URL")
    expect("ca_cert" in _config_error(_cfg(token_url="https://h/t")), "https needs a CA")
    expect("sensor.kind" in _config_error(_cfg(sensor={"kind": "laser"})), "sensor kind")
    gate = {"kind": "gate", "pin_a": 4, "pin_b": 4}
    expect("differ" in _config_error(_cfg(sensor=gate)), "gate pins")
    expect("batch_max" in _config_error(_cfg(batch_max=501)), "server limit")


def test_config_load_bad_json():
    import config

    with open("config.json", "w") as f:
        f.write('{"device_id": ')
    try:
        config.load()
        expect(False, "raises")
    except ValueError as e:
        expect(str(e) == "config.json is not valid JSON", "one clear line")


# ---------------------------------------------------------------- clock, token, url


def test_http_date_and_clock():
    import clock

    expect(clock.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777, "RFC example")
    expect(clock.parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT") == 1709251199, "leap day")
    expect(clock.parse_http_date("yesterday") is None, "garbage")
    clock.learn(2000000000)
    expect(abs(clock.now() - 2000000000) <= 1, "server time wins once learned")


def test_form_quote_and_basic_credentials():
    from token import Token

    from tokenget import form_quote

    expect(form_quote("a b+c/d~é") == b"a+b%2Bc%2Fd%7E%C3%A9", "form encoding")

    class Conn:
        date = None

    t = Token(Conn(), "/oauth/token", "dev 1", "s:e/cret", "parkfleet-ingest", "tok.json")
    import binascii

    cred = binascii.a2b_base64(t._basic[6:])
    expect(cred == b"dev+1:s%3Ae%2Fcret", "RFC 6749 §2.3.1: form-encode, then Basic")
    expect(t.due(), "no token yet")


def test_split_url():
    from config import split_url

    expect(
        split_url("https://h.example:8443/oauth/token")
        == (True, "h.example", 8443, "/oauth/token"),
        "full",
    )
    expect(split_url("http://h") == (False, "h", 80, "/"), "defaults")
    try:
        split_url("h:80/x")
        expect(False, "raises")
    except ValueError:
        pass


# ---------------------------------------------------------------- safe mode


def test_safe_mode_after_boots_without_upload():
    import json

    import safemode

    with open("config.json", "w") as f:
        json.dump({"safe_boots": 3}, f)
    reasons = [safemode.check() for _ in range(4)]
    expect(reasons[:3] == [None, None, None], "three boots allowed")
    expect("3 boots" in reasons[3], "fourth boot is safe mode")
    import flash

    flash.remove("boots")  # what the agent does after its first successful upload
    expect(safemode.check() is None, "a successful upload resets the count")


def test_safe_mode_pin_held():
    import json

    import machine
    import safemode

    with open("config.json", "w") as f:
        json.dump({"safe_pin": 0}, f)
    machine.Pin.sim_set(0, 0)
    expect("pin 0" in (safemode.check() or ""), "BOOT button held")
    machine.Pin.sim_set(0, 1)
    expect(safemode.check() is None, "released: normal boot")


_ROOT = os.getcwd()


main(globals(), sys.argv[1:], fresh)
