# Cold: the agent's side of the state file "state" (the boot stub's, format in appdir.py): the
# report of the running version and its update state that rides along with the next post
# ("agent" in the counts body), the confirmation of a version on trial by its first successful
# upload, and the "update" an answer may carry, which loads the updater (ota.py). Bytes
# throughout: short str constants would be interned for good; the function names are the
# firmware's own qstrs (encode, load, update), which cost nothing.
import gc
import json

import cold
import flash


def read():
    s = flash.read("state") or b"- 0.0.0 - - - -"
    lines = s.split(b"\n")
    return lines[0].split(), lines[1] if len(lines) > 1 else b""


def encode(v, s=b"", r=b"", t=b""):
    # The ',"agent":{...}' bytes for the counts body (reasons are our own texts: no quotes).
    n = b',"agent":{"version":"%s"' % v
    if s:
        n += b',"update":"%s"' % s
    if r:
        n += b',"reason":"%s"' % r
    if t and t != b"-":
        n += b',"target":"%s"' % t
    return n + b"}"


def load(key):
    # [running version, note for the next post, version not to install, release key]: this
    # boot's report: rolled back (and why), a version on trial (installed), or the version.
    t, why = read()
    if why:
        n = encode(t[1], b"rolled_back", why, t[5])
    elif t[4] != b"-":
        n = encode(t[1], b"installed")
    else:
        n = encode(t[1])
    return [t[1], n, t[5], key]


def update(up, log, feed):
    # A post went through: what it confirms, and the update its answer offers.
    app = up.state
    sent = app[1]
    app[1] = None
    if not up.uploaded:
        up.uploaded = True
        flash.remove("boots")  # this boot worked: reset safemode's crash-loop counter
    if sent and (b'"installed"' in sent or b'"rolled_back"' in sent):
        t, why = read()
        if t[4] != b"-":
            # The first successful upload confirms the version on trial.
            t[4] = b"-"
            flash.write_atomic("state", b" ".join(t))
            app[1] = encode(app[0], b"confirmed")
            log("update %s confirmed" % app[0].decode())
        elif why:
            flash.write_atomic("state", b" ".join(t))  # reported: keep only "bad"
    resp = bytes(up.conn.resp)
    if b'"update"' not in resp:
        return
    try:
        want = json.loads(resp)["update"]["version"].encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    if want in (app[0], app[2]) or len(want) > 32 or want.count(b".") != 2:
        return
    del resp, sent
    gc.collect()  # the updater's code and buffers want the largest free blocks
    import ota

    try:
        why = ota.run(up, want, log, feed)
    except Exception as e:  # noqa: BLE001 (network, a refusal, no memory: try again later)
        # The next answer offers the update again and the download resumes (Range); the
        # version running is untouched.
        log("update %s failed: %r" % (want.decode(), e))
        return
    finally:
        cold.drop(ota)
    if why:
        log("update %s refused: %s" % (want.decode(), why))
        app[1] = encode(app[0], b"refused", why.encode(), want)
        app[2] = want  # not again until a reboot, or the server offers another
