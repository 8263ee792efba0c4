# Store and forward on flash. Each reading is a fixed 12-byte record appended to a segment file
# (spool.d/<k> holds seqs k*256 .. k*256+255, about 3 KB, inside one 4 KB littlefs block), so a
# reading costs one small append, never a rewrite. A pointer file, replaced atomically after the
# server acknowledged a batch, holds the first seq not yet delivered (or dropped): a power cut at
# any instant loses no acknowledged state and at worst resends a batch, which the server dedups.
# seq is derived from the spool and the pointer, so it stays contiguous across reboots without a
# write of its own.
import os
import struct
from micropython import const

import flash

# Not "spool/": a directory named like a module would shadow spool.py on import.

_REC = const(12)
_SEG = const(256)
_FMT = "<IIHH"  # seq, ts (0 = unknown), cars, check
_PTR_FMT = "<III"  # head, dropped, cars of the last acknowledged reading


def _check(seq, ts, cars):
    return (seq ^ (seq >> 16) ^ ts ^ (ts >> 16) ^ cars ^ 0x5A5A) & 0xFFFF


class Spool:
    def __init__(self, max_readings, root="spool.d"):
        self.max = max_readings
        self.dir = root
        self._rec = bytearray(_REC)
        flash.mkdir(root)
        self.head, self.dropped, self.cars = 0, 0, None
        raw = flash.read(root + "/ptr")
        if raw and len(raw) == 12:
            self.head, self.dropped, self.cars = struct.unpack(_PTR_FMT, raw)
        self.segs = sorted(int(n) for n in os.listdir(root) if n.isdigit())
        self.next_seq = self.head
        while self.segs:
            last = self._last(self.segs[-1])
            if last is not None:
                self.next_seq = max(self.head, last[0] + 1)
                self.cars = last[2]  # the newest reading, delivered or not
                break
            flash.remove(self._path(self.segs.pop()))  # an empty segment: nothing to keep
        self._trim()

    def _path(self, k):
        return "%s/%d" % (self.dir, k)

    def depth(self):
        return self.next_seq - self.head

    def _last(self, k):
        # Newest valid record of segment k; a torn tail (power cut mid-append) is cut off.
        path = self._path(k)
        size = os.stat(path)[6]
        n = size // _REC
        with open(path, "rb") as f:
            while n:
                f.seek((n - 1) * _REC)
                f.readinto(self._rec)
                rec = struct.unpack(_FMT, self._rec)
                if rec[3] == _check(rec[0], rec[1], rec[2]) and rec[0] // _SEG == k:
                    break
                n -= 1
        if n * _REC != size:
            self._truncate(path, n * _REC)
        return rec if n else None

    def _truncate(self, path, size):
        # Rare (boot after a torn append): copy the valid prefix, then swap it in atomically.
        with open(path, "rb") as f:
            data = f.read(size)
        flash.write_atomic(path, data)

    def append(self, cars, ts):
        # Store one reading; returns its seq. OSError (flash full) propagates to the caller.
        seq = self.next_seq
        k = seq // _SEG
        ts = ts or 0
        cars = min(cars, 0xFFFF)
        struct.pack_into(_FMT, self._rec, 0, seq, ts, cars, _check(seq, ts, cars))
        with open(self._path(k), "ab") as f:
            f.write(self._rec)
        if not self.segs or self.segs[-1] != k:
            self.segs.append(k)
        self.next_seq = seq + 1
        over = self.depth() - self.max
        if over > 0:
            # Bounded: drop the oldest and count them (health reports `dropped`).
            self.head += over
            self.dropped += over
            self._save()
        return seq

    def peek(self, n, out):
        # Call out(seq, cars, ts) for up to n readings from the oldest; returns how many.
        got = 0
        want = self.head
        for k in self.segs:
            if (k + 1) * _SEG <= want:
                continue
            try:
                f = open(self._path(k), "rb")
            except OSError:
                continue  # a lost segment: its readings are skipped by the caller
            with f:
                while got < n and f.readinto(self._rec) == _REC:
                    seq, ts, cars, chk = struct.unpack(_FMT, self._rec)
                    if seq < want or chk != _check(seq, ts, cars):
                        continue
                    out(seq, cars, ts or None)
                    want = seq + 1
                    got += 1
            if got >= n:
                break
        return got

    def ack(self, last_seq, cars):
        # The server stored everything up to last_seq: move the pointer, then free segments.
        if last_seq < self.head:
            return
        self.head = last_seq + 1
        self.cars = cars
        self._save()

    def skip(self):
        # Give up on everything stored (unreadable records); returns how many were dropped.
        n = self.depth()
        self.dropped += n
        self.head = self.next_seq
        self._save()
        return n

    def _save(self):
        ptr = struct.pack(_PTR_FMT, self.head, self.dropped, self.cars or 0)
        flash.write_atomic(self.dir + "/ptr", ptr)
        self._trim()

    def _trim(self):
        while self.segs and (self.segs[0] + 1) * _SEG <= self.head:
            flash.remove(self._path(self.segs.pop(0)))
