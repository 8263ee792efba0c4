# WiFi.ensure's rarely run half (net.py loads it through cold.py): joining with a timeout and
# backoff, and what follows a join: the log line and setting the clock by NTP; also setting the
# RTC from the server's Date (clock.learn, when the RTC is off).
import time

import cold


def join(w, feed):
    # Blocks at most w.timeout_ms (feeding the watchdog); False and a backoff when it fails.
    w.wlan.active(True)
    w.wlan.connect(w.ssid, w._password)
    start = time.ticks_ms()
    while not w.wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > w.timeout_ms:
            delay = cold.run("backoff", "next", w.backoff)
            w._retry_at = time.ticks_add(time.ticks_ms(), delay)
            w.log("wifi join failed (status %s), retry in %ds" % (w.wlan.status(), delay // 1000))
            try:
                w.wlan.disconnect()
            except OSError:
                pass
            return False
        feed()
        time.sleep_ms(100)
    w._retry_at = None
    w.up = True
    joined(w)
    return True


def joined(w):
    w.backoff[2] = 0
    w.log("wifi connected, rssi %s" % w.rssi())
    _sync_clock(w.log)


def _sync_clock(log):
    # Certificate validity needs wall time, and an ESP32 after a power cut starts in 2000: set it
    # by NTP (the firmware's frozen ntptime) before the first TLS handshake. Ports without ntptime
    # (the Unix port has a set clock) skip this; later the server's Date header keeps it right.
    import clock

    if clock.trusted():
        return
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
