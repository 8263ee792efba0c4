# The parking-lot agent's main loop: a reading every interval_s into the flash spool, uploads
# (uplink.py, also the retry supervisor) when the spool has readings and no backoff is pending,
# the watchdog fed only while this loop runs, and a reboot after offline_reboot_s without
# reaching the server. Its parts are built at boot by assemble.py.
import gc
import time

import machine
from micropython import const

import clock
import cold
import flash

gc.collect()

_SLICE_MS = const(1000)  # longest sleep between watchdog feeds


def log(msg):
    print("parkfleet:", msg)


class Agent:
    def __init__(self, cfg):
        # cfg: [config dict], taken out of the list here and let go once assemble.py (boot only,
        # so cold) has built the parts and read the loop's settings: passed as an argument
        # instead, a stale copy in the caller's frame would keep it (about 1.8 KB) alive for the
        # conservative GC.
        import assemble

        (
            self.up,
            self.spool,
            self.sensor,
            self.wifi,
            self.wdt,
            self._loop,  # the loop's settings, for run()
        ) = assemble.parts(cfg.pop(), log)
        cold.drop(assemble)
        self.uptime_ms = 0
        self._tick = time.ticks_ms()
        self.sensor_ok = True
        self.heap_min = gc.mem_free()  # lowest free heap after a collection since boot

    def feed(self):
        if self.wdt:
            self.wdt.feed()
        now = time.ticks_ms()
        self.uptime_ms += time.ticks_diff(now, self._tick)
        self._tick = now

    def read_sensor(self):
        v = self.sensor.read()  # cars, or a gate's (in, out)
        if v is None:
            if self.sensor_ok:
                log("sensor: no reading")
            self.sensor_ok = False
            return
        self.sensor_ok = True
        try:
            self.spool.append(v, clock.now())
        except OSError as e:
            log("spool write failed (%s), reading dropped" % e)

    def run(self):
        # every > 0: readings collected into fewer, larger posts (upload_every_s); debug: heap
        # samples on the console (bench).
        interval, offline, every, debug = self._loop
        sp = self.spool
        up = self.up
        next_read = heap_at = time.ticks_ms()
        last_up = time.ticks_add(next_read, -every)
        while True:
            self.feed()
            now = time.ticks_ms()
            if time.ticks_diff(now, next_read) >= 0:
                self.read_sensor()
                next_read = time.ticks_add(next_read, interval)
                if time.ticks_diff(now, next_read) > 0:
                    next_read = time.ticks_add(now, interval)  # fell behind: do not burst
            d = sp.depth()
            if (
                d
                and not up.waiting(now)
                and (d >= up.batch or time.ticks_diff(now, last_up) >= every)
            ):
                last_up = now
                up.upload(sp, self.uptime_ms // 1000, self.heap_min, self.feed)
            if debug and time.ticks_diff(now, heap_at) >= 1000:
                # bench (debug_heap): once a second, the heap before and after a collection
                heap_at = now
                peak = gc.mem_alloc()  # live data plus this loop's garbage
                gc.collect()
                log("heap live %d peak %d now %d" % (gc.mem_alloc(), peak, gc.mem_alloc()))
            gc.collect()
            self.heap_min = min(self.heap_min, gc.mem_free())
            down = up.down_since
            if offline and down is not None and time.ticks_diff(time.ticks_ms(), down) > offline:
                log("no contact with the server for %ds, rebooting" % (offline // 1000))
                flash.remove("boots")  # a deliberate reboot is not a crash loop
                machine.reset()
            # the next reading, or a pending retry if it comes first: a backoff never delays
            # a reading (readings went missing during outages when it did)
            wake = next_read
            now = time.ticks_ms()
            if sp.depth() and up.waiting(now) and not up.waiting(wake):
                wake = up.retry_at
            wait = time.ticks_diff(wake, time.ticks_ms())
            if wait > 0:
                time.sleep_ms(min(wait, _SLICE_MS))


def main(cfg):
    # Run the agent with the validated config main.py loads, handed over in a one-item list so
    # that once the agent is built no frame or global keeps the dict alive; a crash is kept for
    # the next boot to report (crash.py) and reboots the board, and safemode counts such boots.
    try:
        Agent(cfg).run()
    except Exception as e:  # noqa: BLE001 (a bug must not leave a dead board in the field)
        log("crashed: %r; rebooting in 10 s" % e)
        gc.collect()  # the agent's parts are garbage now: room to record it
        import crash

        crash.store(e)  # the traceback on the console, and kept for the next boot
        time.sleep(10)
        machine.reset()
