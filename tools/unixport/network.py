"""Stand-in for the ESP32 `network` module under the MicroPython Unix port.

The host's own network is the "access point". Configured by environment variables:

  PARKSIM_WIFI       "up" (default): connect() joins at once; "down": joining never succeeds
                     (status STAT_NO_AP_FOUND); a file path: joined while the file says "up"
  PARKSIM_RSSI       RSSI reported while joined (default -60)
  PARKSIM_MAC        MAC address (hex), as for machine.unique_id()
"""

import os

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_CONNECT_FAIL = 203
_host = "parkfleet-sim"


def hostname(name=None):
    global _host
    if name is None:
        return _host
    _host = name


def _link_up():
    v = os.getenv("PARKSIM_WIFI") or "up"
    if v in ("up", "down"):
        return v == "up"
    try:
        with open(v) as f:
            return f.read().strip() == "up"
    except OSError:
        return False


class WLAN:
    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._active = False
        self._ssid = None

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._ssid = None

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._ssid = ssid

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        return self._active and self._ssid is not None and _link_up()

    def status(self, param=None):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("Wifi Not Connected")
            return int(os.getenv("PARKSIM_RSSI") or "-60")
        if param is not None:
            raise ValueError("unknown status param")
        if self.isconnected():
            return STAT_GOT_IP
        if self._ssid is None:
            return STAT_IDLE
        return STAT_NO_AP_FOUND

    def config(self, *args, **kwargs):
        if args == ("mac",):
            import binascii

            mac = (os.getenv("PARKSIM_MAC") or "240ac4000001").replace(":", "")
            return binascii.unhexlify(mac)
        if args == ("essid",) or args == ("ssid",):
            return self._ssid or ""
        if args == ("rssi",):
            return self.status("rssi")
        return None

    def ifconfig(self, *args):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def scan(self):
        return []
