# The parking-lot agent's main loop: a reading every interval_s into the flash spool, uploads
# (uplink.py) when the spool has readings and no backoff is pending, the watchdog fed only while
# this loop runs, and a reboot after offline_reboot_s without reaching the server.
import gc
import sys
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
    def __init__(self, c):
        # Boot-only setup, in agentinit.py so that its code leaves the heap afterwards.
        cold.run("agentinit", "agent", self, c, log)

    def feed(self):
        if self.wdt:
            self.wdt.feed()
        now = time.ticks_ms()
        self.uptime_ms += time.ticks_diff(now, self._tick)
        self._tick = now

    def read_sensor(self):
        cars = self.sensor.read()
        if cars is None:
            if self.sensor_ok:
                log("sensor: no reading")
            self.sensor_ok = False
            return
        self.sensor_ok = True
        try:
            self.spool.append(cars, clock.now())
        except OSError as e:
            self.spool.dropped += 1
            log("spool write failed (%s), reading dropped" % e)

    def upload(self):
        up = self.up
        if not self.wifi.ensure(self.feed):
            up.retry_at = time.ticks_add(time.ticks_ms(), _SLICE_MS * 5)
            if up.down_since is None:
                up.down_since = time.ticks_ms()
            return
        sp = self.spool
        up.upload(sp, (self.uptime_ms // 1000, self.wifi.rssi(), sp.depth(), sp.dropped), self.feed)

    def run(self, cfg):
        # cfg: [config dict]. The loop's settings become locals and the dict is let go: taken
        # out of the list here, not passed as an argument, because a stale copy of an argument
        # in the caller's frame would keep it (about 1.8 KB) alive for the conservative GC.
        c = cfg.pop()
        if c["wdt_s"]:
            self.wdt = machine.WDT(timeout=int(c["wdt_s"] * 1000))
        interval = int(c["interval_s"] * 1000)
        offline = int(c["offline_reboot_s"] * 1000)
        debug = c["debug_heap"]
        # upload_every_s > 0 collects readings into fewer, larger posts (one token header each).
        every = int(c["upload_every_s"] * 1000)
        sp = self.spool
        log(
            "started %s in lot %s, seq %d, spool %d"
            % (c["device_id"], c["lot"], sp.next_seq, sp.depth())
        )
        c = None
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
                and not self.up.waiting(now)
                and (d >= self.up.batch or time.ticks_diff(now, last_up) >= every)
            ):
                last_up = now
                self.upload()
            self.heap_peak = max(self.heap_peak, gc.mem_alloc())
            gc.collect()
            self.heap_live = max(self.heap_live, gc.mem_alloc())
            if debug and time.ticks_diff(now, heap_at) >= 1000:
                heap_at = now  # bench: heap samples, once a second
                log(
                    "heap live %d peak %d now %d" % (self.heap_live, self.heap_peak, gc.mem_alloc())
                )
            down = self.up.down_since
            if offline and down is not None and time.ticks_diff(time.ticks_ms(), down) > offline:
                log("no contact with the server for %ds, rebooting" % (offline // 1000))
                flash.remove("boots")  # a deliberate reboot is not a crash loop
                machine.reset()
            wake = next_read
            if sp.depth() and self.up.waiting(wake):
                wake = self.up.retry_at
            wait = time.ticks_diff(wake, time.ticks_ms())
            if wait > 0:
                time.sleep_ms(min(wait, _SLICE_MS))


def main(cfg):
    # Run the agent with the validated config main.py loads, handed over in a one-item list so
    # that once run() has read it no frame or global keeps the dict alive; a crash reboots the
    # board, and safemode counts such boots.
    try:
        Agent(cfg[0]).run(cfg)
    except Exception as e:  # a bug must not leave a dead board in the field
        log("crashed: %r; rebooting in 10 s" % e)
        sys.print_exception(e)
        time.sleep(10)
        machine.reset()
