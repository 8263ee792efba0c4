# MicroPython, not CPython: the board's start-up, run as `micropython -i mpboot.py` in the board's
# filesystem. ESP32 firmware runs boot.py, then main.py only when it will enter the friendly REPL
# (ports/esp32/main.c), each as __main__ with errors printed, not fatal; a SystemExit from either
# (sys.exit(), machine.soft_reset()) ends the process, which the simulator turns into a reboot.
import os
import sys

if os.getenv("PARKSIM_FS_FULL") == "1":
    # flash-full fault: the filesystem has no free block, so opening a file for writing fails
    # with ENOSPC, as littlefs does on a board whose firmware left no room for it.
    import builtins

    def _simboot_open(name, mode="r", *args, _open=builtins.open):
        if "w" in mode or "a" in mode or "+" in mode:
            raise OSError(28)  # ENOSPC
        return _open(name, mode, *args)

    builtins.open = _simboot_open


def _simboot_run(name):
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return
    try:
        exec(compile(source, name, "exec"), globals())
    except KeyboardInterrupt as err:
        sys.print_exception(err)
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - a board prints any error and goes on to the REPL
        sys.print_exception(err)


_simboot_run("boot.py")
if os.getenv("PARKSIM_BOOT_MAIN") == "1":
    _simboot_run("main.py")
del _simboot_run
# Tells the simulator the boot scripts are done and the REPL banner follows.
sys.stdout.write("\x00simboot-ready\x00")
