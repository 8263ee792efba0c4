# machine.Pin, machine.Timer and the rarely used rest of machine for the Unix port (loaded lazily
# by machine.py); see README.md.
import time

from machine import _env


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
        # Drive an input like the outside world; runs the IRQ handler on a matching edge.
        pin = Pin._pins.get(id)
        old = pin.value() if pin else Pin._levels.get(id, 0)
        Pin._levels[id] = 1 if level else 0
        if pin and pin._handler and old != Pin._levels[id]:
            edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
            if pin._trigger & edge:
                pin._handler(pin)


class Timer:
    # machine.Timer for the boot stub's trial bound: a thread that sleeps for the period, then
    # calls the callback, as the ESP32's timer interrupt schedules it. Only ONE_SHOT is needed.
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=0, **kw):
        if kw:
            self.init(**kw)

    def init(self, mode=ONE_SHOT, period=1000, callback=None):
        import _thread

        def run():
            time.sleep_ms(period)
            try:
                callback(self)
            except SystemExit:
                # machine.reset() from this thread: sys.exit would end the thread only; a reset
                # ends the whole board, as abruptly as the hardware does.
                import os

                os.system("kill -9 $PPID")

        _thread.start_new_thread(run, ())

    def deinit(self):
        pass
