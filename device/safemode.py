# Safe mode keeps a broken board reachable: the agent does not start and the REPL stays free for
# mpremote, when the safe pin is held low at boot or after `safe_boots` consecutive boots that never
# reached a successful upload (a crash or watchdog loop). The count lives in the file "boots";
# the agent removes it after its first successful upload and before a deliberate offline reboot.
# Leave safe mode by fixing the cause and deleting it: `mpremote rm :boots` (or a fresh install).
import flash


def _config():
    try:
        import json

        with open("config.json") as f:
            c = json.load(f)
        return c.get("safe_pin"), c.get("safe_boots", 5)
    except (OSError, ValueError, AttributeError):
        return None, 5  # a bad config is the agent's to report, with one clear line


def check():
    # A reason string (printed) when the agent must not start; otherwise counts this boot and
    # returns None.
    why = _why()
    if why:
        print("parkfleet: safe mode (%s): agent not started, REPL free" % why)
    return why


def _why():
    pin, limit = _config()
    if isinstance(pin, int):
        from machine import Pin

        if Pin(pin, Pin.IN, Pin.PULL_UP).value() == 0:
            return "pin %d held low at boot" % pin
    raw = flash.read("boots")
    try:
        boots = int(raw) if raw else 0
    except ValueError:
        boots = 0
    if isinstance(limit, int) and boots >= limit:
        return "%d boots without a successful upload" % boots
    flash.write_atomic("boots", b"%d" % (boots + 1))
    return None
