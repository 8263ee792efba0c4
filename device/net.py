# WiFi station, the base layer under the uplink: whether the link is up (logging each change, and
# setting the clock by NTP after a join while it is unset) and one join with a timeout. When to
# join again is the retry supervisor's decision (Uplink.upload). Under the Unix port
# tools/unixport/network.py stands in for the radio and reports the host's network as joined.
# The join and NTP are cold (wifijoin.py, clockset.py): loaded for the call, dropped again.
import network

import clock
import cold


class WiFi:
    def __init__(self, ssid, password, timeout_s, log):
        self.ssid = ssid
        self._password = password
        self.timeout_ms = int(timeout_s * 1000)
        self.log = log
        self.wlan = network.WLAN(network.STA_IF)
        self.up = False
        self.drops = 0  # links lost since boot (health reports them)

    def rssi(self):
        try:
            return self.wlan.status("rssi") if self.up else None
        except (OSError, ValueError, TypeError):
            return None

    def ensure(self, join, feed):
        # True when the link is up (logging each change; NTP after a join while the clock is
        # unset). Down and with join: one join first, blocking at most timeout_s (feeding the
        # watchdog); if it fails, the radio's status code instead of False.
        up = self.wlan.isconnected()
        if self.up and not up:
            self.up = False
            self.drops += 1
            self.log("wifi lost")
        status = False
        if not up and join:
            import wifijoin

            status = wifijoin.join(self.wlan, self.ssid, self._password, self.timeout_ms, feed)
            cold.drop(wifijoin)
            up = status is None
        if up and not self.up:
            self.up = True
            self.log("wifi connected, rssi %s" % self.rssi())
            if clock.now() is None:
                import clockset  # NTP, when the clock is unset: cold

                clockset.ntp(self.log)
                cold.drop(clockset)
        return up or status
