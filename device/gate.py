# Gate sensor: two light barriers across a lane, A on the street side and B on the lot side. A
# car that trips A then B and leaves B last went in, the reverse went out. The board reports
# cumulative counters (in, out) since it was first installed, never clamped, wrapping at 2**32
# (the server reads them wrap-safe); the spool keeps them on flash, so a reboot restores them
# from the newest stored reading: no car counted twice, none lost. Occupancy is the server's
# business (baseline + in - out over the lot's gates). The logic is the pure class Gate, fed
# (pin, active, ticks_ms) events, so tests drive it without hardware; GateSensor wires it to two
# GPIO interrupts.
import time

from micropython import const

A = const(0)
B = const(1)
_WRAP = const(0xFFFFFFFF)


class Gate:
    def __init__(self, ins=0, outs=0, debounce_ms=50):
        self.ins = ins
        self.outs = outs
        self.debounce = debounce_ms
        self.active = [False, False]  # beam broken, after debouncing
        self._edge = [None, None]  # ticks of the last accepted edge per pin
        self._first = None  # pin tripped first in the current passage
        self._both = False  # both beams were broken at once in this passage

    def event(self, pin, active, t):
        # One debounced level change; returns +1 (car in), -1 (car out) or 0.
        if active == self.active[pin]:
            return 0
        last = self._edge[pin]
        if last is not None and time.ticks_diff(t, last) < self.debounce:
            return 0  # contact bounce; sync() settles the true level later
        self._edge[pin] = t
        self.active[pin] = active
        if active:
            if self._first is None:
                self._first = pin
            if self.active[A] and self.active[B]:
                self._both = True
            return 0
        if self.active[A] or self.active[B]:
            return 0
        # Both beams clear: the passage is over; it counts only if it crossed from one to the other.
        first, both, self._first, self._both = self._first, self._both, None, False
        if not both or first == pin:
            return 0  # backed out the way it came
        if first == A:
            self.ins = (self.ins + 1) & _WRAP
            return 1
        self.outs = (self.outs + 1) & _WRAP
        return -1

    def sync(self, level_a, level_b, t):
        # Feed the real levels (from the main loop) so a missed or bounced edge cannot stick.
        self.event(A, level_a, t)
        self.event(B, level_b, t)


class GateSensor:
    def __init__(self, cfg, start):
        # start: (in, out) of the newest stored reading, None on a new board.
        from machine import Pin

        self.low = cfg.get("active_low", True)
        pull = Pin.PULL_UP if cfg.get("pull_up", True) else None
        ins, outs = start if isinstance(start, tuple) else (0, 0)
        self.gate = Gate(ins, outs, cfg.get("debounce_ms", 50))
        self.pins = (Pin(cfg["pin_a"], Pin.IN, pull), Pin(cfg["pin_b"], Pin.IN, pull))
        trig = Pin.IRQ_RISING | Pin.IRQ_FALLING
        # Soft IRQs (the default hard=False) are scheduled like Python code, so the handler may
        # allocate; it only records the level change.
        self.pins[A].irq(lambda p: self._irq(A), trig)
        self.pins[B].irq(lambda p: self._irq(B), trig)

    def _level(self, i):
        return bool(self.pins[i].value()) != self.low

    def _irq(self, i):
        self.gate.event(i, self._level(i), time.ticks_ms())

    def read(self):
        # (in, out): the spool stores it as a gate reading.
        g = self.gate
        g.sync(self._level(A), self._level(B), time.ticks_ms())
        return (g.ins, g.outs)
