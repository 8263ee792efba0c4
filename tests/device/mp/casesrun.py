# What units.py and httpcases.py share, imported from the scripts' own directory (the Unix port
# puts it first on sys.path): the check, and the loop that runs the cases and prints one line
# each ("ok <name>" or "FAIL <name>: <error>", then "done, N failed") for run_cases() to read.
import sys


def expect(cond, what):
    if not cond:
        raise AssertionError(what)  # not `assert`: MicroPython strips those under -O


def main(cases, names, before=None):
    # `cases`: the script's globals(); `names`: run only these (all when empty); `before(name)`
    # runs ahead of each case.
    failed = 0
    for name in sorted(k for k in cases if k.startswith("test_")):
        if names and name not in names:
            continue
        if before:
            before(name)
        try:
            cases[name]()
            print("ok", name)
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL %s: %s %s" % (name, type(e).__name__, e))
            sys.print_exception(e)
    print("done, %d failed" % failed)
