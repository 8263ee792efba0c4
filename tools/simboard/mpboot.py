# MicroPython, not CPython: the board's start-up, run as `micropython -i mpboot.py` in the board's
# filesystem. ESP32 firmware runs boot.py, then main.py only if boot.py succeeded and the board
# will enter the friendly REPL (ports/esp32/main.c), each as __main__ with errors printed, not
# fatal. The markers tell the simulator: "start" (the Unix port handles Ctrl-C from here on, so
# input held back during start-up may flow), "ready" (the REPL banner follows) or "exit:N" (a
# SystemExit with status N, which under -i would only drop into the REPL: the simulator ends the
# process instead).
import sys

# Running a script puts the script's own directory first on sys.path instead of ''; a board
# imports from its filesystem root (the cwd here), as main.py's `import safemode` needs.
if sys.path and sys.path[0] != "":
    sys.path[0] = ""

sys.stdout.write("\x00simboot-start\x00")
try:
    import os
    import time

    if os.getenv("PARKSIM_FS_FULL") == "1":
        # flash-full fault: the filesystem has no free block, so opening a file for writing
        # fails with ENOSPC, as littlefs does on a board whose firmware left no room for it.
        import builtins

        def _simboot_open(name, mode="r", *args, _open=builtins.open):
            if "w" in mode or "a" in mode or "+" in mode:
                raise OSError(28)  # ENOSPC
            return _open(name, mode, *args)

        builtins.open = _simboot_open

    def _simboot_run(name):
        """Run a boot script like pyexec_file_if_exists(): False if it raised."""
        try:
            with open(name) as f:
                source = f.read()
        except OSError:
            return True
        try:
            exec(compile(source, name, "exec"), globals())
        except SystemExit as err:
            code = err.args[0] if err.args and isinstance(err.args[0], int) else 0
            sys.stdout.write(f"\x00simboot-exit:{code}\x00")
            while True:  # the simulator ends the process on the marker
                time.sleep(1)
        return True

    if _simboot_run("boot.py") and os.getenv("PARKSIM_BOOT_MAIN") == "1":
        _simboot_run("main.py")
except BaseException as err:  # noqa: BLE001 - a board prints any error (Ctrl-C too), then the REPL
    sys.print_exception(err)
while True:
    try:
        sys.stdout.write("\x00simboot-ready\x00")
        break
    except KeyboardInterrupt:
        pass
