# Cold (net.py loads it for a join, then drops it): joining a WiFi network with a timeout. The
# backoff between joins is the retry supervisor's (uplink.py); what follows a join is net.py's.
import time


def join(wlan, ssid, password, timeout_ms, feed):
    # None once joined; on timeout the radio's status code (read before disconnecting, so the log
    # shows why). Blocks at most timeout_ms, feeding the watchdog.
    wlan.active(True)
    wlan.connect(ssid, password)
    start = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            status = wlan.status()
            try:
                wlan.disconnect()
            except OSError:
                pass  # not joined anyway; the next join starts from scratch
            return status
        feed()
        time.sleep_ms(100)
    return None
