# Store and forward on flash. Each reading is a fixed 20-byte record appended to a segment file
# (spool.d/<k> holds seqs k*192 .. k*192+191, 3840 bytes, inside one 4 KB littlefs block), so a
# reading costs one small append, never a rewrite. A pointer file, replaced atomically after the
# server acknowledged a batch, holds the first seq not yet delivered (or dropped): a power cut at
# any instant loses no acknowledged state and at worst resends a batch, which the server dedups.
# seq is derived from the spool and the pointer, so it stays contiguous across reboots without a
# write of its own. A reading is a zone board's int (cars) or a gate board's (in, out) counters
# (sensor.py); the record keeps its kind, and the newest one restores a gate's counters at boot.
import struct

import cold
import flash
import spoolrec  # the formats

# Not "spool/": a directory named like a module would shadow spool.py on import.


class Spool:
    def __init__(self, max_readings, root="spool.d"):
        self.max = max_readings
        self.dir = root
        self._rec = bytearray(spoolrec.REC)
        # Boot only, so cold: spoolscan.py reads the pointer and finds the segments and the
        # newest reading. head: first seq not yet delivered; last: the newest reading.
        import spoolscan

        self.head, self.dropped, self.last, self.segs, self.next_seq = spoolscan.scan(
            root, self._rec
        )
        cold.drop(spoolscan)
        self._trim()

    def depth(self):
        return self.next_seq - self.head

    def append(self, v, ts):
        # Store one reading (cars, or (in, out)); returns its seq. OSError (flash full)
        # propagates to the caller.
        seq = self.next_seq
        k = seq // spoolrec.SEG
        ts = ts or 0
        kind = isinstance(v, tuple)
        a, b = v if kind else (v, 0)
        struct.pack_into(
            spoolrec.FMT, self._rec, 0, seq, ts, a, b, kind, spoolrec.check(seq, ts, a, b, kind)
        )
        try:
            with open(spoolrec.seg_path(self.dir, k), "ab") as f:
                f.write(self._rec)
        except OSError:
            self.dropped += 1  # flash full or failing: the reading is lost, and counted
            raise
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
        # Call out(seq, reading, ts) for up to n readings from the oldest; returns how many.
        got = 0
        want = self.head
        for k in self.segs:
            if (k + 1) * spoolrec.SEG <= want:
                continue
            try:
                f = open(spoolrec.seg_path(self.dir, k), "rb")  # noqa: SIM115 (`with f` below)
            except OSError:
                continue  # a lost segment: its readings are skipped by the caller
            with f:
                while got < n and f.readinto(self._rec) == spoolrec.REC:
                    seq, ts, a, b, kind, chk = struct.unpack(spoolrec.FMT, self._rec)
                    if seq < want or chk != spoolrec.check(seq, ts, a, b, kind):
                        continue
                    out(seq, (a, b) if kind else a, ts or None)
                    want = seq + 1
                    got += 1
            if got >= n:
                break
        return got

    def ack(self, last_seq, v):
        # The server stored everything up to last_seq (v: its reading): move the pointer, then
        # free segments.
        if last_seq < self.head:
            return
        self.head = last_seq + 1
        self.last = v
        self._save()

    def skip(self):
        # Give up on everything stored (segments lost or corrupted under the pointer, which a
        # healthy board never sees); returns how many readings were dropped.
        n = self.depth()
        self.dropped += n
        self.head = self.next_seq
        self._save()
        return n

    def _save(self):
        v = self.last or 0
        kind = isinstance(v, tuple)
        a, b = v if kind else (v, 0)
        flash.write_atomic(
            self.dir + "/ptr", struct.pack(spoolrec.PTR_FMT, self.head, self.dropped, kind, a, b)
        )
        self._trim()

    def _trim(self):
        while self.segs and (self.segs[0] + 1) * spoolrec.SEG <= self.head:
            flash.remove(spoolrec.seg_path(self.dir, self.segs.pop(0)))
