# Boot only, on trial boots only (appdir.py loads it), never updated over the air: a version on
# trial that has not confirmed (its first successful upload does, appstate.py) within
# trial_boots boots or trial_limit_s seconds is abandoned for the previous directory, with the
# reason on the state file's second line for the agent to report (appdir.py has the format).
import json

import flash


def fall(t, why):
    # Back to the previous directory; t[1] becomes the version never to install again.
    t = [t[2], t[3], b"-", b"-", b"-", t[1]]
    flash.write_atomic("state", b" ".join(t) + b"\n" + t[5] + b" " + why)
    print("parkfleet: rolled back to %s (%s %s)" % (t[1].decode(), t[5].decode(), why.decode()))
    return t


def check(t):
    try:
        with open("config.json") as f:
            c = json.load(f)
        boots, secs = c.get("trial_boots", 3), c.get("trial_limit_s", 600)
    except (OSError, ValueError, AttributeError):
        boots, secs = 3, 600
    n = int(t[4])
    if n >= boots:
        return fall(t, b"not confirmed within %d boots" % boots)
    t[4] = b"%d" % (n + 1)
    flash.write_atomic("state", b" ".join(t))
    import machine

    def expire(_):
        s = flash.read("state").split()
        if s[4] != b"-":
            fall(s, b"not confirmed within %d s" % secs)
            machine.reset()

    machine.Timer(0).init(mode=machine.Timer.ONE_SHOT, period=int(secs * 1000), callback=expire)
    return t
