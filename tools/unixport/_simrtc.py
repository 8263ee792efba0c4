# machine.RTC for the Unix port, loaded by machine.py on first use (clockset.set_rtc, when the
# server's Date header says the clock is off). Apart from _simpin.py on purpose: loading that
# whole module for the clock compiled Pin and Timer too, and a 64 KB board running the agent
# (make soak) ran out of heap there (MemoryError in clockset.set_rtc).
import time


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
