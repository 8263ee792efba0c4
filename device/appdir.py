# Boot only, with main.py, trial.py and flash.py the code an update never replaces
# (device/README.md, "Updates"): which app directory to boot. The file "state" holds one line
# "cur ver prev pver try bad" ("-" for none: prev/pver the directory and version to fall back
# to, try the boots so far of a version on trial, bad a version abandoned and never installed
# again) and, after a fallback, a second line: why. Positional, with no key names: every
# identifier and short string a module holds is interned for good (device/README.md, Memory).
# Without the file (a source checkout) the modules sit beside main.py.
import flash


def path():
    # The directory to put first on sys.path ("" for a source checkout).
    s = flash.read("state")
    if not s:
        return ""
    t = s.split(b"\n")[0].split()
    if t[4] != b"-":
        import trial  # a version on trial: count this boot, or fall back

        t = trial.check(t)
    return t[0].decode()
