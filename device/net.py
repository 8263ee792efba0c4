# WiFi station: join with a timeout, rejoin with backoff when the link drops. Under the Unix port
# tools/unixport/network.py stands in for the radio and reports the host's network as joined.
import time

import network

from backoff import Backoff


class WiFi:
    def __init__(self, ssid, password, timeout_s, log):
        self.ssid = ssid
        self._password = password
        self.timeout_ms = int(timeout_s * 1000)
        self.log = log
        self.wlan = network.WLAN(network.STA_IF)
        self.backoff = Backoff(2, 120)
        self._retry_at = None
        self.up = False

    def rssi(self):
        try:
            return self.wlan.status("rssi") if self.up else None
        except (OSError, ValueError, TypeError):
            return None

    def ensure(self, feed):
        # True when joined. Blocks at most timeout_s (feeding the watchdog), then backs off.
        if self.wlan.isconnected():
            if not self.up:
                self.up = True
                self.backoff.reset()
                self.log("wifi connected, rssi %s" % self.rssi())
                _sync_clock(self.log)
            return True
        if self.up:
            self.up = False
            self.log("wifi lost")
        now = time.ticks_ms()
        if self._retry_at is not None and time.ticks_diff(self._retry_at, now) > 0:
            return False
        self.wlan.active(True)
        self.wlan.connect(self.ssid, self._password)
        start = time.ticks_ms()
        while not self.wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > self.timeout_ms:
                delay = self.backoff.next()
                self._retry_at = time.ticks_add(time.ticks_ms(), delay)
                self.log(
                    "wifi join failed (status %s), retry in %ds"
                    % (self.wlan.status(), delay // 1000)
                )
                try:
                    self.wlan.disconnect()
                except OSError:
                    pass
                return False
            feed()
            time.sleep_ms(100)
        self._retry_at = None
        return self.ensure(feed)


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
