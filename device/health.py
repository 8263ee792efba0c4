# The health object that rides along with a batch now and then (ingestion API "health").
import gc

import machine

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


def encode(uptime_s, rssi, depth, dropped):
    # The ',"health":{...}' bytes for the counts body.
    return (
        b',"health":{"uptime_s":%d,"free_heap":%d,"reset_cause":%s,"rssi":%s,"spool_depth":%d,"dropped":%d}'
        % (
            uptime_s,
            gc.mem_free(),
            b'"%s"' % _cause if _cause else b"null",
            b"%d" % rssi if rssi is not None else b"null",
            depth,
            dropped,
        )
    )
