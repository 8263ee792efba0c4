# Boot only, with main.py and flash.py the code an update never replaces (device/README.md,
# "Updates"): which app directory to boot. app.json names the directory that holds the agent's
# modules ({"cur": "app_a", "ver": "1.2.0", "prev": "app_b", "pver": "1.1.0", "try": n}). A
# version on trial ("try": its boots so far) that has not confirmed (its first successful upload
# removes "try", see appstate.py) within trial_boots boots or trial_s seconds is abandoned:
# app.json points back at the previous directory, with the reason in "fell" for the agent to
# report and the version in "bad", never installed again. Without app.json (a source checkout)
# the modules sit beside main.py.
import json

import flash

STATE = "app.json"


def fall(s, why):
    # Back to the previous directory.
    s = {"cur": s["prev"], "ver": s["pver"], "bad": s["ver"], "fell": s["ver"] + " " + why}
    flash.write_atomic(STATE, json.dumps(s).encode())
    print("parkfleet: rolled back to %s (%s)" % (s["ver"], s["fell"]))
    return s


def _trial(s):
    # Count this boot of a version on trial, or fall back; arm the trial_s timer.
    try:
        with open("config.json") as f:
            c = json.load(f)
        boots, secs = c.get("trial_boots", 3), c.get("trial_s", 600)
    except (OSError, ValueError, AttributeError):
        boots, secs = 3, 600
    if s["try"] >= boots:
        return fall(s, "not confirmed within %d boots" % boots)
    s["try"] += 1
    flash.write_atomic(STATE, json.dumps(s).encode())
    import machine

    def expire(_t):
        t = json.loads(flash.read(STATE))
        if "try" in t:
            fall(t, "not confirmed within %d s" % secs)
            machine.reset()

    machine.Timer(0).init(mode=machine.Timer.ONE_SHOT, period=int(secs * 1000), callback=expire)
    return s


def pick():
    # The directory to put first on sys.path ("" for a source checkout).
    try:
        s = json.loads(flash.read(STATE))
    except (TypeError, ValueError):
        return ""
    if "try" in s:
        s = _trial(s)
    return s["cur"]
