# Readings. A zone board's reading is an int (the cars it sees); a gate board's a tuple (in, out)
# of cumulative counters (gate.py). "file": read from a file at every reading (Unix port, tests,
# demo): "12" is a zone reading, "10 4" a gate reading. "gate" (gate.py, imported only for gate
# boards): two light barriers with interrupts. assemble.make_sensor picks one at boot.


class FileSensor:
    def __init__(self, path):
        self.path = path

    def read(self):
        # The reading, or None when the file is missing or holds neither form.
        try:
            with open(self.path) as f:
                v = f.read().split()
            return (int(v[0]), int(v[1])) if len(v) == 2 else max(0, int(v[0]))
        except (OSError, ValueError, IndexError):
            return None
