# Cold (Spool.__init__ loads it at boot, then drops it): the spool's boot scan. Read the pointer
# file, list the segment files, find the newest valid record, which gives the next seq and the
# last reading (a gate's counters), and cut off a torn tail left by a power cut mid-append. A
# spool from before gate readings (12-byte pointer and records) is converted first.
import os
import struct

import cold
import flash
from spoolrec import FMT, PTR_FMT, REC, SEG, check, seg_path


def scan(root, buf):
    # (head, dropped, last reading, sorted segment numbers, next seq) of the spool in directory
    # root; buf: a REC-byte bytearray to read records into.
    flash.mkdir(root)
    head, dropped, last = 0, 0, None
    raw = flash.read(root + "/ptr")
    if len(raw or b"") != 20 and os.listdir(root):
        import spoolold  # the 12-byte spool of earlier agents: converted (spoolold.py)

        raw = spoolold.scan(root, raw)
        cold.drop(spoolold)
    if raw and len(raw) == struct.calcsize(PTR_FMT):
        head, dropped, kind, a, b = struct.unpack(PTR_FMT, raw)
        last = (a, b) if kind else a
    segs = sorted(int(n) for n in os.listdir(root) if n.isdigit())
    while segs:
        rec = _last(seg_path(root, segs[-1]), segs[-1], buf)
        if rec is not None:
            # the newest reading, delivered or not
            last = (rec[2], rec[3]) if rec[4] else rec[2]
            return head, dropped, last, segs, max(head, rec[0] + 1)
        flash.remove(seg_path(root, segs.pop()))  # an empty segment: nothing to keep
    return head, dropped, last, segs, head


def _last(path, k, buf):
    # Newest valid record of segment k; a torn tail (power cut mid-append) is cut off.
    size = os.stat(path)[6]
    n = size // REC
    with open(path, "rb") as f:
        while n:
            f.seek((n - 1) * REC)
            f.readinto(buf)
            rec = struct.unpack(FMT, buf)
            if rec[5] == check(rec[0], rec[1], rec[2], rec[3], rec[4]) and rec[0] // SEG == k:
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
