# Small files on the board's filesystem, replaced atomically: write a temp file, then rename over
# the old one (atomic on littlefs). A power cut leaves either the old or the new content.
import os


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT cannot rename onto an existing file; read() falls back to the temp file meanwhile.
        remove(path)
        os.rename(tmp, path)


def read(path):
    # The file's bytes, or None; a leftover temp file counts if the rename never happened.
    for p in (path, path + ".tmp"):
        try:
            with open(p, "rb") as f:
                return f.read()
        except OSError:
            pass
    return None


def remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass  # exists
