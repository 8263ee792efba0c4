# Wall time for readings and token expiry. An ESP32 after a power cut starts at 2000-01-01, so the
# clock counts as trustworthy only once it is past _MIN_EPOCH or has been set from an HTTP Date
# header (RFC 9110 §6.6.1) or NTP. Everything is Unix epoch seconds, whatever the port's epoch.
import time

from micropython import const

import cold

_MIN_EPOCH = const(1704067200)  # 2024-01-01: a clock before this has not been set
# Ports with a 2000 epoch return -946684800 here; 1970-epoch ports return 0.
_EPOCH_SHIFT = -int(time.mktime((1970, 1, 1, 0, 0, 0, 0, 0)))
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_ref = None  # (server epoch, ticks_ms then) from the last Date header
_REF_MAX_MS = const(259200000)  # 3 days: well inside ticks_diff's range on every port


def _days(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def parse_http_date(s):
    # IMF-fixdate only ("Sun, 06 Nov 1994 08:49:37 GMT"), the form servers must send.
    p = s.split()
    if len(p) != 6 or p[5] != "GMT" or p[2] not in _MONTHS:
        return None
    try:
        hh, mm, ss = p[4].split(":")
        days = _days(int(p[3]), _MONTHS.index(p[2]) + 1, int(p[1]))
        return days * 86400 + int(hh) * 3600 + int(mm) * 60 + int(ss)
    except ValueError:
        return None


def _system():
    t = int(time.time()) + _EPOCH_SHIFT
    return t if t >= _MIN_EPOCH else None


def now():
    # Unix time in whole seconds, or None while the clock is unknown.
    if _ref is not None:
        age = time.ticks_diff(time.ticks_ms(), _ref[1])
        if 0 <= age < _REF_MAX_MS:
            return _ref[0] + age // 1000
    return _system()


def learn(epoch):
    # Called with the server's Date. Trust the server over the local clock; also set the RTC so
    # TLS certificate validity and the next boot after a soft reset see the right time.
    global _ref
    if epoch is None or epoch < _MIN_EPOCH:
        return
    _ref = (epoch, time.ticks_ms())
    sys_t = _system()
    if sys_t is None or abs(sys_t - epoch) > 2:
        # Rare (a first Date after a power cut, or drift): the RTC code is cold, in clockset.py.
        import clockset

        clockset.set_rtc(epoch - _EPOCH_SHIFT)
        cold.drop(clockset)
