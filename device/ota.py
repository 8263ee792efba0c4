# Cold, boot only: the updater. When an answer offers an update, the agent only records the
# version in the file "update" and resets (appstate.py); at the next boot assemble.parts calls
# boot() before it builds the agent's parts, so the update runs in a nearly fresh heap with what
# it needs alone: the config, the WiFi link, one connection and the token cache
# (assemble.connect, which the caller hands in). It downloads the release into the app directory
# not in use, with the board's access token over its verified connection, and switches to it
# only when everything checked out:
#   1. manifest.json, streamed to flash and hashed; manifest.sig (64 bytes r||s); the ES256
#      signature checked against config's release_key (p256.py, loaded for this only);
#   2. the manifest: format 1, the bytecode version this MicroPython loads, a version newer than
#      the running one unless the signed manifest says rollback;
#   3. each file streamed to <dir>/<file>.part while hashing (never a whole file in RAM), resumed
#      with an HTTP Range request (RFC 9110 §14.2) after an interruption, its size and SHA-256
#      checked, then renamed into place; files already there with the right hash are kept;
#   4. the state file "state" rewritten atomically to boot the new directory on trial
#      (appdir.py), and a reset.
# A power cut anywhere before 4 leaves the state file naming the old directory; after it, the
# trial rules bring a bad version back. The offer is taken off the file before the attempt: after
# a power cut or a network failure the agent boots, and its next post is offered the update
# again (the download resumes); a refusal is written back to the file for the agent to report.
# Whatever the outcome, the attempt ends in a reset.
import binascii
import gc
import hashlib
import json
import os
import sys

import machine
from micropython import const

import cold
import flash
import http

_FORMAT = const(1)
_CHUNK = const(512)
_TRIES = const(3)  # failed attempts at one version before the board reports it refused
_MANIFEST = "upd.json"


def _vt(v):
    return tuple(int(x) for x in v.split("."))


_mv = None  # one chunk buffer for the whole update (boot() makes it, then lets it go)


def _get(conn, token, path, f, h, have):
    # GET path into the open file f from byte `have` on (Range), updating hash h; returns False
    # when a server ignored the Range and sent the whole file (discarded: start over).
    mv = _mv
    whole = [False]

    def stream(s, status, length, deadline):
        if length < 0:
            raise OSError("download without Content-Length")
        whole[0] = have and status == 200
        left = length
        while left > 0:
            http.check(deadline)
            n = s.readinto(mv[: min(left, _CHUNK)])
            if not n:
                raise OSError("connection closed")
            if not whole[0]:
                f.write(mv[:n])
                h.update(mv[:n])
            left -= n
        return 0

    auth = token.value
    if have:
        # RFC 9110 §14.2. The header rides after the Authorization value (http.py writes that
        # verbatim): one parameter fewer in the resident client.
        auth += b"\r\nRange: bytes=%d-" % have
    conn.stream = stream
    try:
        conn.request(b"GET", path, 0, None, auth)
    finally:
        conn.stream = None
    return not whole[0]


def _hash_file(path, h):
    # Feed an existing file to h; returns its size (0 when missing).
    n = 0
    try:
        with open(path, "rb") as f:
            while True:
                k = f.readinto(_mv)
                if not k:
                    break
                h.update(_mv[:k])
                n += k
    except OSError:
        return 0
    return n


def _hex(h):
    return binascii.hexlify(h.digest()).decode()


def _fetch(conn, token, base, d, e):
    # One file of the manifest into directory d; a refusal reason, or None when it is in place.
    name, size, sha = e["path"], e["size"], e["sha256"]
    dest = d + "/" + name
    h = hashlib.sha256()
    if _hash_file(dest, h) == size and _hex(h) == sha:
        return None  # in place from an interrupted earlier run
    flash.remove(dest)
    part = dest + ".part"
    for _ in (0, 1):
        h = hashlib.sha256()
        have = _hash_file(part, h)
        if have > size:
            flash.remove(part)
            have, h = 0, hashlib.sha256()
        if have < size:
            with open(part, "ab") as f:
                ranged = _get(conn, token, base + name, f, h, have)
            if not ranged:
                flash.remove(part)  # the server sent it all: again, from the start
                continue
        if _hash_file(part, hashlib.sha256()) == size and _hex(h) == sha:
            os.rename(part, dest)
            return None
        flash.remove(part)
        if not have:
            break  # a fresh download that does not match: tampered, no second try
    return "%s: SHA-256 mismatch" % name


def boot(c, log, want, connect):
    # From assemble.parts, before the agent is built, with the validated config c: install
    # version want, which the last run was offered (the file "update", appstate.update).
    # connect(c, log, body_cap): assemble.connect, which builds the network side.
    # Installed, refused or failed, it ends in a reset: the agent then starts in a heap that
    # holds none of the updater's names (qstrs are never freed).
    flash.remove("update")  # one attempt per offer: a failure must not hold up every boot
    global _mv
    _mv = memoryview(bytearray(_CHUNK))
    why = None
    try:
        why = _run(c, want, log, connect)
    except Exception as e:  # noqa: BLE001 (network, a refusal, no memory: try again later)
        # The running version is untouched; the next answer offers the update again and the
        # download resumes (Range). Each attempt costs a reset: after _TRIES failures in a row
        # (a file the server cannot serve, a link too poor for it) the board gives up on this
        # version and reports it refused, which pauses a rollout it is a canary of.
        t = (flash.read("updtry") or b"").split()
        n = int(t[1]) + 1 if t and t[0] == want.encode() else 1
        log("update %s failed (%d of %d): %r" % (want, n, _TRIES, e))
        flash.write_atomic("updtry", b"%s %d" % (want, n))
        if n >= _TRIES:
            # A reason goes into the JSON report as is (appstate.encode): no double quotes.
            why = "failed %d times: %s" % (n, e.args[0] if e.args else type(e).__name__)
            why = why.replace('"', "'")
    finally:
        _mv = None
    if why:
        log("update %s refused: %s" % (want, why))
        flash.remove("updtry")
        flash.write_atomic("update", b"%s %s" % (want, why))  # for appstate.load
    machine.reset()


def _run(c, want, log, connect):
    conn, token, wifi = connect(c, log, 256)
    joined = wifi.ensure(True, _feed)
    if joined is not True:
        raise OSError("wifi join failed (status %s)" % joined)
    if token.due():
        token.fetch()
    t = flash.read("state").split(b"\n")[0].split()
    cur, ver = t[0], t[1].decode()
    base = c["ingest_url"][3].rstrip("/") + "/v1/releases/" + want + "/"
    log("update %s: downloading" % want)
    # 1. the manifest and its signature
    h = hashlib.sha256()
    with open(_MANIFEST, "wb") as f:
        _get(conn, token, base + "manifest.json", f, h, 0)
    conn.request(b"GET", base + "manifest.sig", 0, None, token.value)
    sig = bytes(conn.resp)
    import p256

    ok = p256.verify(h.digest(), sig, binascii.unhexlify(c["release_key"]))
    cold.drop(p256)
    if not ok:
        return "bad signature on the manifest"
    # 2. what it says
    del sig, h
    gc.collect()
    with open(_MANIFEST) as f:
        m = json.load(f)
    flash.remove(_MANIFEST)
    if m.get("format") != _FORMAT:
        return "manifest format %s" % m.get("format")
    if m.get("version") != want:
        return "manifest is for version %s" % m.get("version")
    mpy = getattr(sys.implementation, "_mpy", 0) & 0xFF
    if m.get("mpy") != mpy:
        return "bytecode v%s, this board loads v%d" % (m.get("mpy"), mpy)
    if _vt(want) <= _vt(ver) and m.get("rollback") is not True:
        return "%s is not newer than %s" % (want, ver)
    # 3. the files, into the other directory
    d = "app_b" if cur == b"app_a" else "app_a"
    flash.mkdir(d)
    files = m["files"]
    del m  # the rest (the boot stub's files among it) is not needed
    keep = [e["path"] for e in files]
    for name in os.listdir(d):
        if name not in keep and name[:-5] not in keep:
            flash.remove(d + "/" + name)  # an older release's leftovers
    del keep
    for e in files:
        gc.collect()
        why = _fetch(conn, token, base + "app/", d, e)
        if why:
            return why
    # 4. the switch: from here on the boot stub boots d, on trial
    flash.remove("updtry")
    n = b"%s %s %s %s 0 %s" % (d.encode(), want.encode(), cur, t[1], t[5])
    flash.write_atomic("state", n)
    log("update %s installed in %s, rebooting" % (want, d))
    machine.reset()


def _feed():
    pass  # for the WiFi join: no watchdog runs yet (the agent starts it once built)
