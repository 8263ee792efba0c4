# Cold (Spool.__init__ loads it at boot, then drops it): the spool's boot scan. Read the pointer
# file, list the segment files, find the newest valid record, which gives the next seq and the
# last car count, and cut off a torn tail left by a power cut mid-append.
import os
import struct

import flash
from spool import FMT, PTR_FMT, REC, SEG, check, seg_path


def scan(root, buf):
    # (head, dropped, cars, sorted segment numbers, next seq) of the spool in directory root;
    # buf: a REC-byte bytearray to read records into.
    flash.mkdir(root)
    head, dropped, cars = 0, 0, None
    raw = flash.read(root + "/ptr")
    if raw and len(raw) == struct.calcsize(PTR_FMT):
        head, dropped, cars = struct.unpack(PTR_FMT, raw)
    segs = sorted(int(n) for n in os.listdir(root) if n.isdigit())
    while segs:
        last = _last(seg_path(root, segs[-1]), segs[-1], buf)
        if last is not None:
            # cars: the newest reading, delivered or not
            return head, dropped, last[2], segs, max(head, last[0] + 1)
        flash.remove(seg_path(root, segs.pop()))  # an empty segment: nothing to keep
    return head, dropped, cars, segs, head


def _last(path, k, buf):
    # Newest valid record of segment k; a torn tail (power cut mid-append) is cut off.
    size = os.stat(path)[6]
    n = size // REC
    with open(path, "rb") as f:
        while n:
            f.seek((n - 1) * REC)
            f.readinto(buf)
            rec = struct.unpack(FMT, buf)
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
