# Stand-in for the ESP32 `network` module under the MicroPython Unix port; see README.md here.
# Configured by PARKSIM_* environment variables (README.md lists them).
import os

# Only the names the agent and status() use: on the Unix port every name here is a qstr in the
# agent's heap, which a board's built-in module does not cost.
STA_IF = 0
STAT_IDLE = 1000
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201


class WLAN:
    def __init__(self, *_):
        self._active = False
        self._ssid = None

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def connect(self, ssid=None, key=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._ssid = ssid

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        if not self._active or self._ssid is None:
            return False
        v = os.getenv("PARKSIM_WIFI") or "up"
        if v in ("up", "down"):
            return v == "up"
        try:
            with open(v) as f:
                return f.read().strip() == "up"
        except OSError:
            return False

    def status(self, param=None):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("Wifi Not Connected")
            return int(os.getenv("PARKSIM_RSSI") or "-60")
        if self.isconnected():
            return STAT_GOT_IP
        return STAT_IDLE if self._ssid is None else STAT_NO_AP_FOUND

    def config(self, param):
        if param == "mac":
            import binascii

            return binascii.unhexlify((os.getenv("PARKSIM_MAC") or "240ac4000001").replace(":", ""))
        if param in ("ssid", "essid"):
            return self._ssid or ""
        return self.status(param)
