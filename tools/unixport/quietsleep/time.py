# MicroPython only: put first on MICROPYPATH, this shadows the built-in `time` for agents under the
# Unix port. Its sleep_ms() wakes about 500 times a second while the agent sleeps (measured with
# /proc/PID/status context switches), so 500 boards on one host cost ~250,000 wake-ups a second
# and the host, not the service, becomes the limit. An ESP32 sleeps for real; so does
# `time.sleep()` here (one select() per call). tools/soak.py uses it; device code is unchanged.
from utime import *  # noqa: F403 - the built-in module under its alias
from utime import sleep


def sleep_ms(ms):
    sleep(ms / 1000)
