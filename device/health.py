# Cold (Uplink._body loads it every health_every_s, then drops it): the health object that rides
# along with a batch now and then (ingestion API "health"): how the board is, and its vitals
# since the last health object the server acknowledged. At most 200 bytes on the wire: the
# fields go in most important first, a field that would not fit is left out (the API lets any
# be absent), and the failure counters are left out while they are zero (absent: none).
import gc

import machine
from micropython import const

_MAX = const(200)  # bytes of ',"health":{...}'
_NAMES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deepsleep"),
    ("SOFT_RESET", "soft"),
    ("BROWNOUT_RESET", "brownout"),
)


def reset_cause():
    try:
        cause = machine.reset_cause()
    except (AttributeError, OSError):
        return None
    for const_name, name in _NAMES:
        if getattr(machine, const_name, None) == cause:
            return name
    return str(cause)


_cause = reset_cause()  # the cause of this boot; read once


def encode(up, depth, dropped, uptime_s, heap_min):
    # The ',"health":{...}' bytes for the counts body. up: the Uplink (its vitals are read, not
    # changed); depth: readings still waiting after the post that carries this. Few names:
    # each one of a loaded module is a qstr for good (README "Memory").
    try:
        # The largest free block of the ESP-IDF heap (where TLS buffers come from); the Unix
        # port cannot tell.
        import esp32

        block = max(h[2] for h in esp32.idf_heap_info(esp32.HEAP_DATA))
    except (ImportError, AttributeError, ValueError, OSError):
        block = None
    values = (
        up.interval_s,
        depth,
        _cause,
        uptime_s,
        dropped,
        up.post_fails or None,
        up.token_fails or None,
        (up.wifi.drops - up.drops) or None,
        heap_min,
        up.rssi_min,
        up.wifi.rssi(),
        gc.mem_free(),
        block,
    )
    # The field names in the order above, most important first (one bytes constant).
    keys = (
        b"interval_s spool_depth reset_cause uptime_s dropped post_fails token_fails wifi_drops"
        b" heap_min rssi_min rssi free_heap heap_block"
    ).split()
    out = b',"health":{'
    for k, v in zip(keys, values):  # noqa: B905 (MicroPython's zip has no strict)
        if v is None:
            continue
        item = (b'"%s":"%s",' if isinstance(v, str) else b'"%s":%d,') % (k, v)
        if len(out) + len(item) <= _MAX:  # the last "," becomes the "}"
            out += item
    return out[:-1] + b"}"
