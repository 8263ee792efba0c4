# Car counts. "file": an integer read from a file at every reading (Unix port, tests).
# "gate" (gate.py, imported only for gate boards): two light barriers with interrupts.
# assemble.make_sensor picks one at boot.


class FileSensor:
    def __init__(self, path):
        self.path = path

    def read(self):
        # The count, or None when the file is missing or not an integer.
        try:
            with open(self.path) as f:
                return max(0, int(f.read().strip()))
        except (OSError, ValueError):
            return None
