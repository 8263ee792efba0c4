"""Stand-in for the ESP32 `machine` module under the MicroPython Unix port.

Put this directory (tools/unixport) on MICROPYPATH, never into device/ (device/ goes to real
boards). It shadows the Unix port's own small `machine`. Configured by environment variables:

  PARKSIM_MAC          board MAC as hex ("24:0a:c4:12:34:56" or "240ac4123456") for unique_id()
  PARKSIM_RESET_CAUSE  reset_cause() of this boot: power_on (default), hard, watchdog, deepsleep,
                       soft, or the number
  PARKSIM_PINS         initial input levels, "0=1,4=0"; unset inputs read their pull (up: 1, else 0)
  PARKSIM_PIN_DIR      directory with files "pin<N>" holding "0"/"1"; when present they override
                       the level (a test can change them while the agent runs)
  PARKSIM_RESET_EXIT   exit status of reset()/soft_reset()/an expired WDT (default 75), so a
                       supervisor (tools/simboard) can tell a reboot from a crash

Simulation hooks for tests: Pin.sim_set(id, level, ticks=None) changes a level and runs the IRQ
handler like the hardware would; WDT.feeds counts feeds; an expired WDT (no feed within its
timeout) resets at the next feed or check, like the hardware dog would have already done.
"""

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


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    _levels = {}
    _pins = {}

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._handler = None
        self._trigger = 0
        Pin._pins[id] = self
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            Pin._levels[self.id] = 1 if value else 0

    def value(self, x=None):
        if x is not None:
            Pin._levels[self.id] = 1 if x else 0
            return None
        d = _env("PARKSIM_PIN_DIR")
        if d:
            try:
                with open("%s/pin%d" % (d, self.id)) as f:
                    return 1 if f.read().strip() == "1" else 0
            except OSError:
                pass
        if self.id in Pin._levels:
            return Pin._levels[self.id]
        for item in _env("PARKSIM_PINS", "").split(","):
            if item.split("=")[0] == str(self.id):
                return 1 if item.split("=")[1] == "1" else 0
        return 1 if getattr(self, "pull", None) == Pin.PULL_UP else 0

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, hard=False):
        self._handler = handler
        self._trigger = trigger

    @staticmethod
    def sim_set(id, level):
        """Drive an input like the outside world; runs the IRQ handler on a matching edge."""
        pin = Pin._pins.get(id)
        old = pin.value() if pin else Pin._levels.get(id, 0)
        Pin._levels[id] = 1 if level else 0
        if pin and pin._handler and old != Pin._levels[id]:
            edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
            if pin._trigger & edge:
                pin._handler(pin)


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


class RTC:
    _offset = 0

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        # (year, month, day, weekday, hours, minutes, seconds, subseconds) as on the ESP32.
        if dt is None:
            t = time.gmtime(int(time.time()) + RTC._offset)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        RTC._offset = secs - int(time.time())
        return None
