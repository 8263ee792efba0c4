# The board's config.json, checked once at boot. A bad file raises ValueError with one line that
# names the key (never its value: the secret lives here); the agent prints it and waits.
import json

# Contract keys (the provisioning tool writes them): name -> type checker
_REQUIRED = ("device_id", "client_secret", "token_url", "audience", "ingest_url", "lot")
_REQUIRED += ("interval_s", "sensor", "wifi")

# Optional keys and their defaults (documented in device/README.md)
DEFAULTS = {
    "ca_cert": None,  # CA certificate file (DER or PEM) for https URLs
    "spool_max": 4096,  # readings kept on flash while offline; beyond, the oldest are dropped
    "batch_max": 20,  # readings per upload (server: up to 500); each costs 56 bytes of buffer
    "health_every_s": 300,  # how often the health object rides along with a batch
    "http_timeout_s": 10,  # per network step; a whole exchange gets three times this
    "backoff_base_s": 2,  # first retry delay after a failed upload (full jitter)
    "backoff_cap_s": 300,  # longest retry delay for network errors, 5xx, 429/503
    "auth_backoff_cap_s": 900,  # longest retry delay after invalid_client (wrong secret/disabled)
    "wdt_s": 120,  # hardware watchdog timeout; 0 switches it off
    "offline_reboot_s": 900,  # reboot after this long without reaching the server (ESPHome: 15 min)
    "safe_pin": None,  # GPIO held low at boot -> safe mode (REPL only), e.g. 0 (BOOT button)
    "safe_boots": 5,  # consecutive boots without a successful upload before safe mode
    "wifi_timeout_s": 20,  # WiFi join timeout
    "upload_every_s": 0,  # 0: post each reading at once; else batch them, post this often
    "debug_heap": False,  # print heap use once a second (bench)
    "release_key": None,  # hex X||Y of the P-256 key that signs releases; None: no updates
    "trial_boots": 3,  # a new version not confirmed within this many boots is abandoned
    "trial_limit_s": 600,  # ... or within this many seconds (read by trial.py at boot)
    # The token request's dialect (tokenget.py): "form" (Basic credentials) or "json" (Auth0);
    # the parameter that carries the audience ("audience", "resource" or None: none); a scope.
    "token_body": "form",
    "token_audience_param": "audience",
    "token_scope": None,
}


def _need(c, msg):
    if not c:
        raise ValueError(msg)


def _num(v, d, key, k=False):
    # v >= d, an integer when k. Short parameter names: each distinct one is a qstr for good.
    ok = isinstance(v, int) if k else isinstance(v, (int, float))
    _need(ok and not isinstance(v, bool) and v >= d, "%s must be a number >= %s" % (key, d))


def split_url(url):
    # "https://host:port/path" -> (tls, host, port, path); ValueError for anything else.
    if url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    elif url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    else:
        raise ValueError("URL must start with http:// or https://")
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    i = hostport.rfind(":")
    host = hostport
    if i >= 0 and hostport[i + 1 :].isdigit():
        host, port = hostport[:i], int(hostport[i + 1 :])
    if not host:
        raise ValueError("URL has no host")
    return tls, host, port, path


def validate(c):
    # The config with defaults filled in; token_url and ingest_url are left split by split_url,
    # so the agent needs no URL parser after boot.
    _need(isinstance(c, dict), "config.json must hold a JSON object")
    for k in _REQUIRED:
        _need(k in c, "missing key '%s'" % k)
    for k in c:
        _need(k in _REQUIRED or k in DEFAULTS, "unknown key '%s'" % k)
    for k in ("device_id", "client_secret", "audience", "lot"):
        _need(isinstance(c[k], str) and c[k], "%s must be a non-empty string" % k)
    tls = False
    for k in ("token_url", "ingest_url"):
        try:
            c[k] = split_url(c[k])
        except (ValueError, TypeError, AttributeError):
            raise ValueError("%s must be an http:// or https:// URL" % k)
        tls = c[k][0] or tls
    _num(c["interval_s"], 0.05, "interval_s")
    w = c["wifi"]
    _need(isinstance(w, dict) and isinstance(w.get("ssid"), str), "wifi needs an ssid")
    _need(isinstance(w.get("password", ""), str), "wifi password must be a string")
    _sensor(c["sensor"])
    for k, v in DEFAULTS.items():
        c.setdefault(k, v)
    for k in ("spool_max", "batch_max", "safe_boots"):
        _num(c[k], 1, k, True)
    _need(c["batch_max"] <= 500, "batch_max must be <= 500")
    for k in ("health_every_s", "http_timeout_s", "backoff_base_s", "backoff_cap_s"):
        _num(c[k], 0.01, k)
    for k in (
        "auth_backoff_cap_s",
        "wdt_s",
        "offline_reboot_s",
        "wifi_timeout_s",
        "upload_every_s",
    ):
        _num(c[k], 0, k)
    _need(c["safe_pin"] is None or isinstance(c["safe_pin"], int), "safe_pin must be a pin number")
    _need(not tls or isinstance(c["ca_cert"], str), "https URLs need ca_cert")
    k = c["release_key"]
    # hex digits checked as bytes: each distinct one-character str would be a qstr for good
    ok = k is None or (
        isinstance(k, str)
        and len(k) == 128
        and all(48 <= b <= 57 or 97 <= b <= 102 for b in k.encode())
    )
    _need(ok, "release_key must be 128 hex digits (X||Y of a P-256 key)")
    _num(c["trial_boots"], 1, "trial_boots", True)
    _num(c["trial_limit_s"], 1, "trial_limit_s")
    _need(c["token_body"] in ("form", "json"), "token_body must be 'form' or 'json'")
    k = c["token_audience_param"]
    _need(
        k in ("audience", "resource", None),
        "token_audience_param must be 'audience', 'resource' or null",
    )
    k = c["token_scope"]
    # RFC 6749 §3.3: scope tokens of printable ASCII but '"' and '\', separated by spaces
    ok = k is None or (
        isinstance(k, str)
        and k.strip()
        and all(b == 32 or (33 <= b <= 126 and b not in (34, 92)) for b in k.encode())
    )
    _need(ok, "token_scope must be null or scope tokens separated by spaces")
    return c


def _sensor(s):
    _need(isinstance(s, dict), "sensor must be an object")
    kind = s.get("kind")
    if kind == "file":
        _need(isinstance(s.get("path"), str), "sensor.path must be a file name")
        _need(len(s) == 2, "sensor (file) takes only kind and path")
    elif kind == "gate":
        for k in s:
            _need(
                k in ("kind", "pin_a", "pin_b", "debounce_ms", "active_low", "start", "pull_up"),
                "unknown key 'sensor.%s'" % k,
            )
        for k in ("pin_a", "pin_b"):
            _need(isinstance(s.get(k), int), "sensor.%s must be a pin number" % k)
        _need(s["pin_a"] != s["pin_b"], "sensor.pin_a and sensor.pin_b must differ")
    else:
        raise ValueError("sensor.kind must be 'file' or 'gate'")


def load(path="config.json"):
    try:
        with open(path) as f:
            c = json.load(f)
    except OSError:
        raise ValueError("cannot read " + path)
    except ValueError:
        raise ValueError(path + " is not valid JSON")
    return validate(c)


def wait_valid(path="config.json"):
    # The validated config; on a bad file one console line, then wait (the REPL stays reachable
    # with Ctrl-C) until the file changes, instead of a traceback loop.
    import time

    while True:
        try:
            return load(path)
        except ValueError as e:
            print("parkfleet: config error: %s; waiting for a fixed %s" % (e, path))
        seen = _stat(path)
        while _stat(path) == seen:
            time.sleep(2)


def _stat(path):
    import os

    try:
        return os.stat(path)
    except OSError:
        return None
