# Code a healthy board rarely runs (boot-time setup, token requests, refusals, WiFi joins) lives
# in modules of its own, loaded by run() for one call and then dropped from sys.modules, so that
# between those calls its code does not occupy the heap. The import costs a little flash read
# and heap churn each time, which at these rates (boot, once a day, on failures) is nothing.
import sys


def run(module, fn, *args):
    m = __import__(module)
    try:
        return getattr(m, fn)(*args)
    finally:
        sys.modules.pop(module, None)  # pop: a nested run of the same module dropped it already
