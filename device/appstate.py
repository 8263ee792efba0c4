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
    # (running version, report for the next post, version not to install, release key), for
    # the Uplink to keep: this boot's report is rolled back (and why), a version on trial
    # (installed), an update refused at boot (and why), or the version.
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
    return t[1], n, bad, key


def update(up):
    # A post of the Uplink up went through: what it confirms, and the update its answer offers.
    # Returns (the report for the next post or None, the version not to install, the crash
    # report still to send: None, a post carrying it was answered) for up to keep; an update to
    # install resets the board instead.
    log = up.log
    if up.crash:
        import crash

        crash.clear()
        cold.drop(crash)
    ver, sent, bad = up.version, up.agent, up.skip
    note = None
    if not up.uploaded:
        flash.remove("boots")  # this boot worked: reset safemode's crash-loop counter
    if sent and (b'"installed"' in sent or b'"rolled_back"' in sent):
        t, why = read()
        if t[4] != b"-":
            # The first successful upload confirms the version on trial.
            t[4] = b"-"
            flash.write_atomic("state", b" ".join(t))
            note = encode(ver, b"confirmed")
            log("update %s confirmed" % ver.decode())
        elif why:
            flash.write_atomic("state", b" ".join(t))  # reported: keep only "bad"
    elif sent and b'"refused"' in sent:
        flash.remove("update")  # reported
    resp = bytes(up.conn.resp)
    if b'"update"' not in resp:
        return note, bad, None
    try:
        want = json.loads(resp)["update"]["version"].encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return note, bad, None
    if want in (ver, bad) or len(want) > 32 or want.count(b".") != 2:
        return note, bad, None
    why = None
    if not up.key:
        why = b"no release_key in config.json"
    elif read()[0][0] == b"-":
        why = b"not installed from a release (no state file)"
    if why:
        log("update %s refused: %s" % (want.decode(), why.decode()))
        # not again until a reboot, or the server offers another
        return encode(ver, b"refused", why, want), want, None
    # The update runs at the next boot, before the agent is built: the updater and its checks
    # need more heap than is left beside the running agent.
    flash.write_atomic("update", want)
    log("update %s offered, rebooting to install it" % want.decode())
    machine.reset()
    return note, bad, None  # (a reset does not return on a board)
