# The agent's start, imported by the boot stub (main.py) from the active app directory: safe-mode
# check, config, then the agent. Boot-only modules are dropped after use (module and name) so
# their heap goes to the agent; the order also compiles the big modules on a fresh heap. This
# module's own code stays in the heap while the agent runs (its frame never returns): keep it
# short, with the messages in the modules it drops.
import gc
import sys

import safemode

_why = safemode.check()  # prints why, in safe mode
del sys.modules["safemode"], safemode
gc.collect()
if not _why:
    # http first: from .py the board compiles it at import, which needs the largest free block,
    # and that is on the fresh heap (shipped as .mpy this changes nothing; the agent needs it).
    import http  # noqa: F401  # isort: skip
    import config

    _c = [config.wait_valid()]
    del sys.modules["config"], config
    gc.collect()
    import agent

    agent.main(_c)  # takes the config out of the list: freed once the agent is built
