# Boot stub: with appdir.py, trial.py and flash.py the only code an update never replaces
# (device/README.md, "Updates"), so kept minimal: the app directory appdir.path() names goes first
# on sys.path, then start.py (safe mode, config, the agent) runs from it. A release that cannot
# even start reboots, which counts toward its trial boots and so falls back.
import sys

import appdir

sys.path.insert(0, appdir.path())
del sys.modules["appdir"], appdir
try:
    import start  # noqa: F401
except Exception as e:  # noqa: BLE001 (a broken release must reboot, to fall back)
    print("parkfleet: start failed: %r; rebooting" % e)
    import machine

    machine.reset()
