# Cold: the agent's side of the state file "state" (the boot stub's, format in appdir.py): the
# report of the running version and its update state that rides along with the next post
# ("agent" in the counts body), the confirmation of a version on trial by its first successful
# upload, and the "update" an answer may carry: its version goes into the file "update" and
# the board resets, to install it at boot in a fresh heap (assemble.parts, ota.boot); a refusal
# there comes back in the same file ("version why") for the next post to report. Bytes
# throughout: short str constants would be interned for good; the function names are the
# firmware's own qstrs (encode, load, update), which cost nothing.
import json

import machine

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
    # boot's report: rolled back (and why), a version on trial (installed), an update refused
    # at boot (and why), or the version.
    t, why = read()
    bad = t[5]
    refused = (flash.read("update") or b"").split(b" ", 1)
    if why:
        n = encode(t[1], b"rolled_back", why, t[5])
    elif t[4] != b"-":
        n = encode(t[1], b"installed")
    elif len(refused) > 1:
        n = encode(t[1], b"refused", refused[1], refused[0])
        bad = refused[0]  # not again until a reboot, or the server offers another
    else:
        n = encode(t[1])
    return [t[1], n, bad, key]


def update(up, log):
    # A post went through: what it confirms, and the update its answer offers.
    app = up.state
    sent = app[1]
    app[1] = None
    if not up.uploaded:
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
    elif sent and b'"refused"' in sent:
        flash.remove("update")  # reported
    resp = bytes(up.conn.resp)
    if b'"update"' not in resp:
        return
    try:
        want = json.loads(resp)["update"]["version"].encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    if want in (app[0], app[2]) or len(want) > 32 or want.count(b".") != 2:
        return
    why = None
    if not app[3]:
        why = b"no release_key in config.json"
    elif read()[0][0] == b"-":
        why = b"not installed from a release (no state file)"
    if why:
        log("update %s refused: %s" % (want.decode(), why.decode()))
        app[1] = encode(app[0], b"refused", why, want)
        app[2] = want  # not again until a reboot, or the server offers another
        return
    # The update runs at the next boot, before the agent is built: the updater and its checks
    # need more heap than is left beside the running agent.
    flash.write_atomic("update", want)
    log("update %s offered, rebooting to install it" % want.decode())
    machine.reset()
