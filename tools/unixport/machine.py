# Stand-in for the ESP32 `machine` module under the MicroPython Unix port; see README.md here.
# Configured by PARKSIM_* environment variables (README.md lists them).

import os
import sys
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_CAUSES = {"power_on": 1, "hard": 2, "watchdog": 3, "deepsleep": 4, "soft": 5}


def _env(name, default=None):
    v = os.getenv(name)
    return default if v is None or v == "" else v


def reset_cause():
    v = _env("PARKSIM_RESET_CAUSE", "power_on")
    return int(v) if v.isdigit() else _CAUSES.get(v, PWRON_RESET)


def reset():
    print("machine: reset")
    sys.exit(int(_env("PARKSIM_RESET_EXIT", "75")))


def soft_reset():
    reset()


def unique_id():
    mac = _env("PARKSIM_MAC", "240ac4000001").replace(":", "").replace("-", "")
    import binascii

    return binascii.unhexlify(mac)


def freq(hz=None):
    return 240000000


def idle():
    time.sleep_ms(1)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


class WDT:
    feeds = 0

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self._last = time.ticks_ms()
        print("machine: WDT started, timeout %d ms" % timeout)

    def check(self):
        late = time.ticks_diff(time.ticks_ms(), self._last)
        if late > self.timeout:
            print("machine: WDT expired (%d ms without a feed)" % late)
            sys.exit(int(_env("PARKSIM_RESET_EXIT", "75")))

    def feed(self):
        self.check()
        self._last = time.ticks_ms()
        WDT.feeds += 1


def __getattr__(name):
    # Pin and RTC live in _simpin.py and load on first use: on the Unix port this module shares
    # the agent's heap, and a file-sensor board never touches a pin.
    if name in ("Pin", "RTC"):
        import _simpin

        globals()["Pin"], globals()["RTC"] = _simpin.Pin, _simpin.RTC
        return globals()[name]
    raise AttributeError(name)
