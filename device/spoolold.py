# Cold (spoolscan.py imports it at boot only when the spool is not in today's format, then drops
# it): converts the spool of the agents before gate readings, so that readings they spooled and
# never delivered are sent by this one, under their own seq (the server's dedup holds), once.
# Their format: 12-byte records "<IIHH" (seq, ts, cars, check) in segments of 256 seqs
# (spool.d/<k>), and a 12-byte pointer "<III" (head, dropped, cars of the last acknowledged).
#
# Power-cut safe, with the old spool intact until the new one is complete beside it:
#   1. build: the readings from head on, as 20-byte zone records, in spool.d/new/<k>; then the
#      new pointer, atomically, as spool.d/ptr.new (its presence: the new spool is complete);
#   2. swap: remove the old segments, then the old pointer (its absence: no old segment is
#      left); move new/<k> into spool.d; rename ptr.new to ptr (the commit: spoolscan reads a
#      20-byte pointer and never loads this module again).
# A cut in 1 leaves the old spool as it was (1 starts over); a cut in 2 resumes 2 where it was.
# An old board that never delivered anything has no pointer: its segments are recognised by
# their records, and a pointer (0, 0, 0) is written first, so the steps above tell apart.
import os
import struct

from micropython import const

import flash
from spoolrec import FMT, PTR_FMT, SEG, check, seg_path

_OREC = const(12)
_OSEG = const(256)


def scan(root, raw):
    # The pointer after the conversion (bytes), or None when root holds no old spool (today's
    # segments, no pointer yet: nothing to do). raw: what the pointer file holds, if anything.
    new = root + "/new"
    done = root + "/ptr.new"
    if "ptr.new" not in os.listdir(root):
        if not raw or len(raw) != _OREC:
            if not _old(root):
                return None
            raw = struct.pack("<III", 0, 0, 0)
            flash.write_atomic(root + "/ptr", raw)
        _build(root, new, done, raw)
    if flash.read(root + "/ptr") is not None:
        for n in _segs(root):
            os.remove(seg_path(root, n))
        flash.remove(root + "/ptr.tmp")
        flash.remove(root + "/ptr")
    for n in _segs(new):
        os.rename(seg_path(new, n), seg_path(root, n))
    try:
        os.rmdir(new)
    except OSError:
        pass  # already gone
    os.rename(done, root + "/ptr")
    return flash.read(root + "/ptr")


def _build(root, new, done, raw):
    head, dropped, cars = struct.unpack("<III", raw)
    for n in _segs(new):
        os.remove(seg_path(new, n))  # a build a power cut interrupted
    flash.mkdir(new)
    rec = bytearray(20)
    want = head
    out = None
    cur = -1  # the new segment being written
    for k in _segs(root):
        if (k + 1) * _OSEG <= want:
            continue
        with open(seg_path(root, k), "rb") as f:
            while True:
                b = f.read(_OREC)
                if len(b) < _OREC:
                    break  # the end, or a torn tail
                seq, ts, c, chk = struct.unpack("<IIHH", b)
                if seq < want or seq // _OSEG != k or chk != _check(seq, ts, c):
                    continue  # delivered, or unreadable (the old agent skipped those too)
                if seq // SEG != cur:
                    if out:
                        out.close()
                    cur = seq // SEG  # seqs only go up: each new segment is written once
                    out = open(seg_path(new, cur), "wb")  # noqa: SIM115 (closed below)
                struct.pack_into(FMT, rec, 0, seq, ts, c, 0, 0, check(seq, ts, c, 0, 0))
                out.write(rec)
                want = seq + 1
    if out:
        out.close()
    flash.write_atomic(done, struct.pack(PTR_FMT, head, dropped, 0, cars, 0))


def _old(root):
    # Does the oldest segment hold 12-byte records? All of them valid and consecutive (a 20-byte
    # segment read this way fails at its second record; a lone one by its size).
    segs = _segs(root)
    if not segs:
        return False
    k = segs[0]
    path = seg_path(root, k)
    size = os.stat(path)[6]
    if size < 2 * _OREC and size != _OREC:
        return False
    want = None
    with open(path, "rb") as f:
        for _ in range(size // _OREC):
            seq, ts, c, chk = struct.unpack("<IIHH", f.read(_OREC))
            if seq != (want or seq) or seq // _OSEG != k or chk != _check(seq, ts, c):
                return False
            want = seq + 1
    return True


def _check(seq, ts, cars):
    return (seq ^ (seq >> 16) ^ ts ^ (ts >> 16) ^ cars ^ 0x5A5A) & 0xFFFF


def _segs(path):
    try:
        return sorted(int(n) for n in os.listdir(path) if n.isdigit())
    except OSError:
        return []
