# Spool's rarely run half (loaded through cold.py, then dropped): at boot, list the segment
# files, find the newest valid record, which gives the next seq and the last car count, and cut
# off a torn tail left by a power cut mid-append; and skip() for a spool that cannot be read.
import os
import struct

import flash
from spool import FMT, REC, SEG, check


def scan(sp):
    sp.segs = sorted(int(n) for n in os.listdir(sp.dir) if n.isdigit())
    sp.next_seq = sp.head
    while sp.segs:
        last = _last(sp, sp.segs[-1])
        if last is not None:
            sp.next_seq = max(sp.head, last[0] + 1)
            sp.cars = last[2]  # the newest reading, delivered or not
            return
        flash.remove(sp._path(sp.segs.pop()))  # an empty segment: nothing to keep


def _last(sp, k):
    # Newest valid record of segment k; a torn tail (power cut mid-append) is cut off.
    path = sp._path(k)
    size = os.stat(path)[6]
    n = size // REC
    with open(path, "rb") as f:
        while n:
            f.seek((n - 1) * REC)
            f.readinto(sp._rec)
            rec = struct.unpack(FMT, sp._rec)
            if rec[3] == check(rec[0], rec[1], rec[2]) and rec[0] // SEG == k:
                break
            n -= 1
    if n * REC != size:
        _truncate(path, n * REC)
    return rec if n else None


def _truncate(path, size):
    # Rare (boot after a torn append): copy the valid prefix, then swap it in atomically.
    with open(path, "rb") as f:
        data = f.read(size)
    flash.write_atomic(path, data)


def skip(sp):
    # Give up on everything stored (lost or corrupted segments); returns how many were dropped.
    n = sp.depth()
    sp.dropped += n
    sp.head = sp.next_seq
    sp._save()
    return n
