# Boot entry point: safe-mode check first, then the agent. Keep this file tiny.
import safemode

_why = safemode.check()
if _why:
    print("parkfleet: safe mode (%s): agent not started, REPL free" % _why)
else:
    import agent

    agent.main()
