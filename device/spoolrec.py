# The spool's on-flash formats, shared by spool.py (appends, reads, the pointer), spoolscan.py
# (the boot scan) and spoolold.py (the conversion of the old format), so that neither of the
# cold ones imports the module that loads them. A record is 20 bytes; segment k holds seqs
# k*SEG .. k*SEG+SEG-1 (3840 bytes, inside one 4 KB littlefs block).
from micropython import const

REC = const(20)
SEG = const(192)
FMT = "<IIIIHH"  # seq, ts (0 = unknown), cars or in, 0 or out, kind (0 zone, 1 gate), check
PTR_FMT = "<IIIII"  # head, dropped, kind, a, b of the last acknowledged reading


def check(seq, ts, a, b, kind):
    x = seq ^ ts ^ a ^ (b << 1) ^ (kind << 8) ^ 0x5A5A
    return (x ^ (x >> 16)) & 0xFFFF


def seg_path(root, k):
    return "%s/%d" % (root, k)
