# Cold: crash reports. An unhandled exception in the agent (agent.main: a MemoryError is cause
# "memory", any other "exception"), and a reset by the watchdog or a brown-out (found at the next
# boot from the reset cause), are kept across the reset in the small file "crash": a line
# "count cause version", then the traceback (empty after a watchdog reset or a brown-out). The
# next boot loads it as the ',"crash":{...}' bytes the Uplink sends with every post until one is
# answered; then clear() removes the file. count adds up the crashes until then; the version is
# the one in the state file when it crashed (null without one: a source checkout); the traceback
# is cut at the start to its last _TB characters, whole lines. Nothing here touches the spool: a
# crash loses no reading, and a report the service refuses is dropped (Uplink.failed). Few
# names (store, load, clear are the firmware's own qstrs): each name of a loaded module is a
# qstr for good (README "Memory").
import json
import os
import sys

from micropython import const

import flash

_TB = const(600)  # characters of traceback sent (the API's bound)
_ESCAPED = const(640)  # bytes of the traceback as a JSON string, escapes included


def _save(cause):
    # Start the file over with the next count: "count cause version\n".
    try:
        with open("crash", "rb") as f:  # the first line only: a traceback can be long
            n = int(f.readline().split(b" ", 1)[0])
    except (OSError, ValueError):
        n = 0  # none, or garbled: start over
    s = flash.read("state")
    v = s.split(b"\n")[0].split()[1] if s else b"-"
    f = open("crash", "wb")  # noqa: SIM115 (the caller writes on, then closes it)
    f.write(b"%d %s %s\n" % (n + 1, cause, v))
    return f


def store(e):
    # From agent.main's handler, after a collection: the traceback on the console, and straight
    # into the file (no copy of it in the heap); load() reads only its tail. A failure here (flash
    # full, no memory) is logged: the board resets all the same.
    sys.print_exception(e)
    try:
        with _save(b"memory" if isinstance(e, MemoryError) else b"exception") as f:
            sys.print_exception(e, f)
    except Exception as e2:  # noqa: BLE001
        print("parkfleet: crash not recorded: %r" % e2)


def load(cause):
    # The ',"crash":{...}' bytes for the Uplink, or None. cause: this boot's reset cause
    # (health.reset_cause(), None: read it here); a watchdog reset or a brown-out is recorded
    # first.
    if cause is None:
        import health

        cause = health.reset_cause()
    if cause in ("watchdog", "brownout"):
        _save(cause.encode()).close()
    try:
        size = os.stat("crash")[6]
        with open("crash", "rb") as f:
            head = f.readline()
            f.seek(max(len(head), size - _TB))
            tb = f.read()
        n, why, v = head.split()
        n = int(n)
    except (OSError, ValueError):
        clear()  # none, or garbled: nothing to report
        return None
    if size - len(head) > _TB:
        # Cut at the start: whole lines from the first that begins inside the tail.
        i = tb.find(b"\n")
        tb = tb[i + 1 :] if 0 <= i < len(tb) - 1 else tb
    while tb and tb[0] & 0xC0 == 0x80:
        tb = tb[1:]  # no character cut in two
    t = json.dumps(tb.decode())
    while len(t) > _ESCAPED:  # escapes (a line break is two bytes) must fit the post too
        i = tb.find(b"\n", 1)
        tb = tb[i + 1 :] if i > 0 else tb[-_TB // 2 :]
        t = json.dumps(tb.decode())
    v = b'"%s"' % v if v != b"-" else b"null"
    return b',"crash":{"version":%s,"count":%d,"cause":"%s","traceback":%s}' % (v, n, why, t)


def clear():
    flash.remove("crash")
