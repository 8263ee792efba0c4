# WiFi station: join with a timeout, rejoin with backoff when the link drops. Under the Unix port
# tools/unixport/network.py stands in for the radio and reports the host's network as joined.
# Joining (and the clock sync after it) is in wifijoin.py, loaded only for that (cold.py).
import time

import network

import cold


class WiFi:
    def __init__(self, ssid, password, timeout_s, log):
        self.ssid = ssid
        self._password = password
        self.timeout_ms = int(timeout_s * 1000)
        self.log = log
        self.wlan = network.WLAN(network.STA_IF)
        self.backoff = [2, 120, 0]  # base_s, cap_s, failures (backoff.py)
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
                cold.run("wifijoin", "joined", self)
            return True
        if self.up:
            self.up = False
            self.log("wifi lost")
        now = time.ticks_ms()
        if self._retry_at is not None and time.ticks_diff(self._retry_at, now) > 0:
            return False
        return cold.run("wifijoin", "join", self, feed)
