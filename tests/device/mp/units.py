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
    from spool import Spool
    from spoolrec import REC

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


# ---------------------------------------------------------------- the spool of earlier agents
# Written here in their format (git: device/spool.py before gate readings), not by spoolold.py.


def _old_reading(seq):
    # (ts, cars) of an old agent's reading seq: some with no known time (ts 0)
    return (0 if seq % 7 == 3 else 1700000000 + seq), (seq * 37) % 300


def _old_spool(n, head=None, dropped=0, torn=False):
    # Readings 0..n-1 in 12-byte records ("<IIHH": seq, ts, cars, check), segments of 256 seqs;
    # with a head, the 12-byte pointer ("<III": head, dropped, cars of the last acknowledged)
    # and the acknowledged segments trimmed, as the old agent left them.
    import struct

    if "spool.d" not in os.listdir():
        os.mkdir("spool.d")
    for seq in range(n):
        ts, cars = _old_reading(seq)
        chk = (seq ^ (seq >> 16) ^ ts ^ (ts >> 16) ^ cars ^ 0x5A5A) & 0xFFFF
        if head is None or (seq // 256 + 1) * 256 > head:
            with open("spool.d/%d" % (seq // 256), "ab") as f:
                f.write(struct.pack("<IIHH", seq, ts, cars, chk))
    if torn:
        with open("spool.d/%d" % ((n - 1) // 256), "ab") as f:
            f.write(b"\x07\x00\x00\x00\x01")  # a power cut mid-append
    if head is not None:
        with open("spool.d/ptr", "wb") as f:
            f.write(struct.pack("<III", head, dropped, _old_reading(head - 1)[1]))


def _expect_converted(s, head, n, dropped):
    got = []
    s.peek(10000, lambda seq, v, ts: got.append((seq, v, ts or 0)))
    want = [(seq, _old_reading(seq)[1], _old_reading(seq)[0]) for seq in range(head, n)]
    expect(got == want, "undelivered readings, each once: %r..." % (got[:3],))
    expect((s.head, s.dropped, s.next_seq) == (head, dropped, n), "pointer and seq carried over")
    files = sorted(set(str(seq // 192) for seq in range(head, n)))
    files.append("ptr")
    expect(sorted(os.listdir("spool.d")) == files, "left: %r" % os.listdir("spool.d"))


def test_spool_of_earlier_agents_is_converted():
    from spool import Spool

    _old_spool(300, head=120, dropped=3, torn=True)
    s = Spool(4096)
    _expect_converted(s, 120, 300, 3)
    expect(s.last == _old_reading(299)[1], "the newest reading")
    expect(s.append(5, None) == 300, "seq goes on")
    s2 = Spool(4096)  # a reboot: today's format, nothing to convert
    expect(s2.next_seq == 301 and s2.head == 120, "as converted")


def test_spool_of_earlier_agents_never_delivered_is_converted():
    from spool import Spool

    _old_spool(5)  # no pointer: the old agent never had an answer
    _expect_converted(Spool(4096), 0, 5, 0)


def test_spool_all_delivered_by_earlier_agents():
    from spool import Spool

    _old_spool(600, head=600, dropped=1)
    s = Spool(4096)
    _expect_converted(s, 600, 600, 1)
    expect(s.last == _old_reading(599)[1], "the last acknowledged reading")


def test_spool_today_without_pointer_is_not_converted():
    # A board of today that never had an answer: its segments are not taken for old ones.
    from spool import Spool

    for n in (1, 2, 3, 200):
        for f in os.listdir("spool.d") if "spool.d" in os.listdir() else ():
            os.remove("spool.d/" + f)
        s = Spool(4096)
        for i in range(n):
            s.append((i, 1) if i % 2 else i + 1, 1700000000)
        got = _seqs(Spool(4096))
        expect(got == list(range(n)), "%d readings kept: %r" % (n, got))


def _seqs(s):
    got = []
    s.peek(10000, lambda seq, v, ts: got.append(seq))
    return got


class _Cut(Exception):
    pass


class _Flash:
    # os and open for spoolold.py and flash.py whose power fails before the n-th change to the
    # flash (a write loses its second half): the conversion is killed at every step in turn.
    def __init__(self, n):
        self.n = n

    def step(self):
        self.n -= 1
        if self.n < 0:
            raise _Cut()

    def rename(self, a, b):
        self.step()
        os.rename(a, b)

    def remove(self, path):
        self.step()
        os.remove(path)

    def rmdir(self, path):
        self.step()
        os.rmdir(path)

    def mkdir(self, path):
        self.step()
        os.mkdir(path)

    def listdir(self, path):
        return os.listdir(path)

    def stat(self, path):
        return os.stat(path)

    def open(self, path, mode="r"):
        if "r" in mode:
            return open(path, mode)
        self.step()
        return _CutFile(self, open(path, mode))


class _CutFile:
    def __init__(self, flash, f):
        self.flash = flash
        self.f = f

    def write(self, data):
        try:
            self.flash.step()
        except _Cut:
            self.f.write(data[: len(data) // 2])
            self.f.close()
            raise
        return self.f.write(data)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _boot(cut):
    # Spool() at boot with the power failing at change `cut` (None: no failure); returns the
    # spool, or None when the power failed, and how many changes the boot made.
    import flash
    import spoolold

    fs = _Flash(10**9 if cut is None else cut)
    spoolold.os = flash.os = fs
    spoolold.open = flash.open = fs.open
    try:
        from spool import Spool

        return Spool(4096), 10**9 - fs.n
    except _Cut:
        return None, 0
    finally:
        flash.os = os
        flash.open = open
        sys.modules.pop("spoolold", None)


def _wipe(path="spool.d"):
    for f in os.listdir(path) if path in os.listdir() or "/" in path else ():
        try:
            os.remove(path + "/" + f)
        except OSError:
            _wipe(path + "/" + f)
            os.rmdir(path + "/" + f)


def test_spool_conversion_survives_a_power_cut_at_every_step():
    # Killed before each change to the flash in turn: the next boot finds every undelivered
    # reading once, the pointer carried over. A cut once the new spool is complete (the swap)
    # is then followed by a cut at each step of the boot that resumes it. Old segment 0 has no
    # namesake among the new ones (seqs 200..299 are new segment 1); the second spool has no
    # pointer (never delivered).
    resumed = 0
    for head, n, dropped in ((200, 300, 3), (None, 40, 0)):
        _wipe()
        _old_spool(n, head, dropped, torn=True)
        steps = _boot(None)[1]
        expect(steps > n - (head or 0), "a change per record, and the swap: %d" % steps)
        for first in range(steps):
            _wipe()
            _old_spool(n, head, dropped, torn=True)
            expect(_boot(first)[0] is None, "the first boot was cut")
            if "ptr.new" not in os.listdir("spool.d"):
                _expect_converted(_boot(None)[0], head or 0, n, dropped)
                continue
            state = _snapshot()
            second = 0
            while True:
                _restore(state)
                s = _boot(second)[0]
                if s is not None:
                    break  # the resumed swap had fewer changes than this
                _expect_converted(_boot(None)[0], head or 0, n, dropped)
                second += 1
                resumed += 1
            _expect_converted(s, head or 0, n, dropped)
    expect(resumed >= 10, "cuts while resuming the swap: %d" % resumed)


def _snapshot(path="spool.d"):
    # {relative path: bytes, or None for a directory} of the files under path
    out = {}
    for f in os.listdir(path):
        p = path + "/" + f
        try:
            with open(p, "rb") as fh:
                out[p] = fh.read()
        except OSError:
            out[p] = None
            out.update(_snapshot(p))
    return out


def _restore(state):
    _wipe()
    for p in sorted(state):
        if state[p] is None:
            os.mkdir(p)
    for p, data in state.items():
        if data is not None:
            with open(p, "wb") as f:
                f.write(data)


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


_STATE = (b"0.0.0", None, None, None)  # appstate.load's: version, report, skip, release key


def test_supervisor_counts_failures_and_backs_off():
    import http

    from uplink import Uplink

    class Conn:
        date = None

    lines = []
    up = Uplink(
        Conn(), "/v1/counts", None, None, 20, 1000, 2, 60, 900, lines.append, _STATE, None, 1
    )
    for _ in range(62):
        expect(not up.failed(OSError(104), up.conn, False), "an upload failure backs off")
    expect(up.failures == 62 and up.auth_failures == 0, "failures counted")
    expect(up.waiting(time.ticks_ms()) and up.down_since is not None, "waiting, out of reach")
    expect(up.failed(http.HTTPError(413), up.conn, False) and up.batch == 10, "413: half a batch")
    expect(not up.failed(http.HTTPError(403), up.conn, False), "403 backs off")
    expect(up.auth_failures == 1 and up.down_since is None, "by the credentials' cap; answered")
    expect("backoff" in lines[-1] and "(failure 1)" in lines[-1], "logged: " + lines[-1])
    expect(not up.failed(OSError(110), up.conn), "a token request failure backs off")
    expect(up.post_fails == 64 and up.token_fails == 1, "vitals: failed posts and token requests")


def test_body_fits_the_buffer_with_reports_pending():
    # The default buffer's body room (20 zone readings of 56 bytes + 256) holds readings at their
    # longest, the health object, a long agent report and a crash report at its bound.
    import json

    from spool import Spool
    from uplink import Uplink

    class Conn:
        date = None
        body = memoryview(bytearray(20 * 56 + 256))

    class WiFi:
        drops = 0

        def rssi(self):
            return -70

    s = Spool(100)
    for _ in range(30):
        s.append(1000000, 1799999999)
    agent = b',"agent":{"version":"1.1.0","update":"refused","reason":"%s"}' % (b"r" * 150)
    crash = b',"crash":{"version":null,"count":1,"cause":"watchdog","traceback":"%s"}' % (
        b"x" * 600
    )
    up = Uplink(Conn(), "/", None, WiFi(), 20, 1000, 2, 60, 900, print, _STATE, crash, 60)
    up.agent = agent
    got = up._body(s, 10, 20000)
    d = json.loads(bytes(Conn.body[: up._n]))
    expect(1 <= got == len(d["readings"]) < 20, "fewer readings while reports ride: %d" % got)
    expect("health" in d and "agent" in d and "crash" in d, "all of it: %s" % d.keys())
    up.agent = up.crash = None
    got = up._body(s, 10, 20000)
    expect(got == 20 and len(json.loads(bytes(Conn.body[: up._n]))["readings"]) == 20, "full")


def test_refused_crash_report_is_dropped_and_the_readings_go_on():
    import http

    import crash
    from uplink import Uplink

    class Conn:
        date = None

    crash.store(ValueError("x"))
    lines = []
    up = Uplink(
        Conn(), "/v1/counts", None, None, 20, 1000, 2, 60, 900, lines.append, _STATE, None, 1
    )
    up.crash = crash.load(None)
    expect(up.crash is not None, "a crash to report")
    expect(up.failed(http.HTTPError(422), up.conn, False), "422 with a crash report: at once")
    expect(up.crash is None and crash.load(None) is None, "the report is forgotten, file and all")
    expect("crash report refused (422), dropped" in lines[-1], lines[-1])
    expect(not up.failed(http.HTTPError(422), up.conn, False), "a 422 without one backs off")


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

    import config
    from tokenget import form_quote

    expect(form_quote("a b+c/d~é") == b"a+b%2Bc%2Fd%7E%C3%A9", "form encoding")

    class Conn:
        date = None

    c = config.validate(_cfg(device_id="dev 1", client_secret="s:e/cret"))
    t = Token(Conn(), c, "tok.json")
    expect(t.url == (False, "localhost", 1, "/oauth/token"), "token_url split")
    expect(t._form == b"grant_type=client_credentials&audience=parkfleet-ingest", t._form)
    import binascii

    cred = binascii.a2b_base64(t._basic[6:])
    expect(cred == b"dev+1:s%3Ae%2Fcret", "RFC 6749 §2.3.1: form-encode, then Basic")
    expect(t.due(), "no token yet")


def test_token_request_dialects():
    import json

    import config
    from tokenget import body

    def make(**kw):
        c = _cfg(audience="https://api.example/ingest")
        c.update(kw)  # (_cfg drops a key given None; here None is a value)
        return body(config.validate(c))

    basic, form = make(token_audience_param="resource", token_scope="counts:write")
    expect(basic.startswith(b"Basic "), "form: RFC 6749 §2.3.1 Basic credentials")
    want = b"grant_type=client_credentials&resource=https%3A%2F%2Fapi.example%2Fingest"
    expect(form == want + b"&scope=counts%3Awrite", form)
    expect(make(token_audience_param=None)[1] == b"grant_type=client_credentials", "no audience")
    basic, raw = make(token_body="json", client_secret='se"cr\\et')
    expect(basic is None, "json: the credentials are in the body, no Basic header")
    d = json.loads(raw)
    expect(
        d
        == {
            "grant_type": "client_credentials",
            "client_id": "dev_1",
            "client_secret": 'se"cr\\et',
            "audience": "https://api.example/ingest",
        },
        "Auth0's body: %s" % raw,
    )
    d = json.loads(make(token_body="json", token_audience_param=None, token_scope="a b")[1])
    expect("audience" not in d and d["scope"] == "a b", "no audience, a scope")


def test_config_token_dialect_errors():
    c = _cfg(token_body="xml")
    expect(_config_error(c) == "token_body must be 'form' or 'json'", "token_body")
    e = _config_error(_cfg(token_audience_param="aud"))
    expect(e == "token_audience_param must be 'audience', 'resource' or null", "param")
    for bad in ("", " ", 'a"b', "a\\b", 5):
        e = _config_error(_cfg(token_scope=bad))
        expect(e == "token_scope must be null or scope tokens separated by spaces", repr(bad))
    expect(_config_error(_cfg(token_scope="counts:write openid")) is None, "scope tokens")


# ---------------------------------------------------------------- health, crash reports


class _Up:
    # The Uplink fields health.encode reads, at their worst.
    class wifi:
        drops = 4294967295

        def rssi():
            return -100

    interval_s = 86400
    post_fails = 99999
    token_fails = 99999
    drops = 0
    rssi_min = -127


def test_health_fits_200_bytes_at_worst():
    import json

    import health

    out = health.encode(_Up, 4096, 4294967295, 4294967295, 4194304)
    expect(len(out) <= 200, "%d bytes: %s" % (len(out), out))
    d = json.loads(b"{" + out[1:] + b"}")["health"]
    for k in ("interval_s", "spool_depth", "reset_cause", "uptime_s", "dropped", "post_fails"):
        expect(k in d, "%s kept first: %s" % (k, out))
    expect(d["interval_s"] == 86400 and d["spool_depth"] == 4096, out)

    class Healthy(_Up):
        post_fails = token_fails = 0
        rssi_min = -71

    Healthy.wifi.drops = 0
    out = health.encode(Healthy, 0, 0, 3600, 30000)
    d = json.loads(b"{" + out[1:] + b"}")["health"]
    want = {"interval_s", "spool_depth", "reset_cause", "uptime_s", "dropped", "heap_min"}
    want |= {"rssi_min", "rssi", "free_heap"}
    expect(set(d) == want, "a healthy board: every field, no zero counter: %s" % out)
    expect(d["spool_depth"] == 0 and d["rssi_min"] == -71 and len(out) <= 200, out)


def _deep(n):
    if n:
        return _deep(n - 1)
    raise ValueError('the "test sensor" failed')


def _crash_report():
    import json

    import crash

    raw = crash.load(None)
    return raw and json.loads(b"{" + raw[1:] + b"}")["crash"], raw


def test_crash_report_kept_bounded_and_cleared():
    import crash
    import flash

    flash.write_atomic("state", b"app_a 1.1.0 - - - -")
    try:
        _deep(30)  # a traceback of 30 frames: far more than 600 characters
    except ValueError as e:
        crash.store(e)
    d, raw = _crash_report()
    expect(d["version"] == "1.1.0" and d["count"] == 1 and d["cause"] == "exception", raw)
    tb = d["traceback"]
    expect(len(tb) <= 600 and tb.endswith('ValueError: the "test sensor" failed\n'), tb)
    expect(tb.startswith("  File ") and len(raw) < 760, "whole lines, bounded: %d" % len(raw))
    try:
        bytearray(1 << 40)
    except MemoryError as e:
        crash.store(e)
    d, raw = _crash_report()
    expect(d["count"] == 2 and d["cause"] == "memory", "counted up until answered: %s" % raw)
    crash.clear()
    expect(crash.load(None) is None, "answered: forgotten")
    flash.remove("state")
    crash.store(OSError(5))
    expect(_crash_report()[0]["version"] is None, "a source checkout: version null")


def test_watchdog_and_brownout_resets_are_crash_reports():
    import crash
    import machine

    saved = machine.reset_cause
    try:
        machine.reset_cause = lambda: machine.WDT_RESET
        d, raw = _crash_report()
        expect(d["cause"] == "watchdog" and d["traceback"] == "" and d["count"] == 1, raw)
        machine.BROWNOUT_RESET = 6
        machine.reset_cause = lambda: 6
        d, raw = _crash_report()
        expect(d["cause"] == "brownout" and d["count"] == 2, raw)
        machine.reset_cause = lambda: machine.PWRON_RESET
        crash.clear()
        expect(crash.load(None) is None, "a power-on reset is no crash")
    finally:
        machine.reset_cause = saved


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
