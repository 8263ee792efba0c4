# Code a healthy board rarely runs (boot-time setup, the spool's boot scan, token requests,
# refusals, WiFi joins, setting the clock, backoff delays, health) lives in modules of its own,
# the *cold* modules of README.md. The code that needs one imports it with a plain `import`
# right where it is needed and drops it again after the call:
#
#     import tokenget
#     ...tokenget.request(...)...
#     cold.drop(tokenget)
#
# so that between those calls its code does not occupy the heap. The import costs a little flash
# read and heap churn each time, which at these rates (boot, once a day, on failures) is nothing.
# A cold module computes and returns values; the class that owns the state assigns them. Import
# one only in a function that returns soon: a local name in a frame that lives on (agent.main's)
# would keep the module in the heap.
import sys


def drop(module):
    # pop with a default: dropping a module twice (or one another caller dropped) is harmless.
    sys.modules.pop(module.__name__, None)
