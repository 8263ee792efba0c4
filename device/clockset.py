# Cold: setting the board's clock, rarely needed. NTP after a WiFi join while the clock is unset
# (net.py), and the RTC from a server's Date header when it is off (clock.learn). Each caller
# loads this module for the call and drops it again; it imports nothing of clock.py (the caller
# decides that the clock needs setting).
import time


def ntp(log):
    # Certificate validity needs wall time, and an ESP32 after a power cut starts in 2000: set it
    # by NTP (the firmware's frozen ntptime) before the first TLS handshake (net.py calls this
    # only while the clock is unset). Ports without ntptime (the Unix port has a set clock) skip
    # this; later the server's Date header keeps it right.
    try:
        import ntptime

        ntptime.settime()
        log("clock set by NTP")
    except ImportError:
        pass
    except (OSError, OverflowError) as e:
        log("NTP failed (%r); using the server's Date header" % e)


def set_rtc(t):
    # t: seconds since the port's epoch. No settable RTC (ImportError, AttributeError): the ticks
    # reference that clock.learn keeps is enough between Date headers.
    try:
        import machine

        tm = time.gmtime(t)
        machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
    except (ImportError, AttributeError, OSError):
        pass
