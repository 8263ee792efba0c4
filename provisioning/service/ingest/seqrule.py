"""Which of a board's readings becomes its current one: the rule for zone and gate boards alike.

A board's seqs are contiguous (device/spool.py derives each from the spool and its pointer and
uploads oldest first), so its next new reading is normally `held + 1`. A reading that is not
(a hole of skipped records, a seq restarted by a re-flash, or a stray: one bit flipped in a
spooled seq, a torn record, a bug) is stored like any other, never lost, but only held as the
board's *suspect* seq: it becomes current once the board's next reading follows it (`suspect +
1 ... + SEQ_STEP`), confirming the jump. A reading that follows the current one instead is the
truth and drops the suspect. So a stray seq, however near or far, is never current and cannot
pin the board; an honest jump costs one reading's delay (within one post when the post carries
more readings, one post when it carries one). A reading slightly below the current one (by at
most SEQ_GAP: a late replay) changes nothing: the newer reading already holds.
"""

from __future__ import annotations

from collections.abc import Iterable

# The largest step that still counts as "the next reading": a board's seqs step by one.
SEQ_STEP = 1
# Below the current seq by more than this is a restart (a wiped spool counts from 0 again), not
# a late replay: far more than a board's spool holds.
SEQ_GAP = 1_000_000


def follows(seq: int, base: int | None) -> bool:
    """Whether `seq` is the next reading after `base` (or nothing was held yet)."""
    return base is None or 0 < seq - base <= SEQ_STEP


def track(
    seqs: Iterable[int], held: int | None, suspect: int | None
) -> tuple[list[int], int | None, int | None]:
    """Walk newly stored `seqs` (ascending) from the board's current seq `held` and its
    `suspect`; returns the seqs that became current, in order, and the new (held, suspect)."""
    taken: list[int] = []
    for seq in seqs:
        if follows(seq, held) or (suspect is not None and follows(seq, suspect)):
            taken.append(seq)
            held, suspect = seq, None
        elif held is not None and seq <= held and held - seq <= SEQ_GAP:
            continue  # a late replay: the newer current reading already counts
        else:
            suspect = seq  # a jump: current only once the next reading confirms it
    return taken, held, suspect
