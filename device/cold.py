# Code a healthy board rarely runs (boot-time setup, the spool's boot scan, token requests,
# refusals, WiFi joins, setting the clock, backoff delays, health) lives in modules of its own,
# the *cold* modules of README.md. Their one caller imports such a module with a plain `import`
# right where it is needed and drops it again after the call:
#
#     import tokenget
#     ...tokenget.request(...)...
#     cold.drop(tokenget)
#
# so that between those calls its code does not occupy the heap. The import costs a little flash
# read and heap churn each time, which at these rates (boot, once a day, on failures) is nothing.
# A cold module computes and returns values; the class that owns the state assigns them.
import sys


def drop(module):
    # pop with a default: a nested user of the same module may have dropped it already.
    sys.modules.pop(module.__name__, None)
