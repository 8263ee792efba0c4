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


def _env(name, default=None):
    v = os.getenv(name)
    return default if v is None or v == "" else v


def reset_cause():
    v = _env("PARKSIM_RESET_CAUSE", "power_on")
    names = ("power_on", "hard", "watchdog", "deepsleep", "soft")  # PWRON_RESET ... SOFT_RESET
    return int(v) if v.isdigit() else names.index(v) + 1 if v in names else PWRON_RESET


def reset():
    print("machine: reset")
    sys.exit(int(_env("PARKSIM_RESET_EXIT", "75")))


def soft_reset():
    reset()


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
    # Pin, RTC and the rarely used rest live in _simpin.py and load on first use: on the Unix
    # port this module shares the agent's heap (its names are qstrs there too), and a
    # file-sensor board never touches a pin.
    if name not in (
        "Pin",
        "RTC",
        "Timer",
        "unique_id",
        "freq",
        "idle",
        "disable_irq",
        "enable_irq",
    ):
        raise AttributeError(name)  # e.g. BROWNOUT_RESET, probed by health.py: no load for it
    if name == "RTC":
        from _simrtc import RTC as v  # small on its own: see _simrtc.py
    else:
        import _simpin

        v = getattr(_simpin, name)
    globals()[name] = v
    return v
