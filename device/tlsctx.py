# (Not named tls.py: MicroPython has a built-in `tls` module, which would win the import.)
# TLS client context that really verifies: MicroPython's SSLContext checks nothing until told to.
# CERT_REQUIRED + the board's CA + server_hostname (set per connection by http.py). mbedTLS wants
# DER; the provisioning tool converts, and a PEM file is converted here (one base64 decode).
import ssl

_ctx = None
_ca_path = None


def _der(path):
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"-----BEGIN"):
        import binascii

        end = data.find(b"-----END")
        if end < 0:
            raise ValueError("ca_cert: PEM without END line")
        # Only the first certificate of a PEM bundle: the board trusts one CA.
        body = b"".join(x.strip() for x in data[:end].split(b"\n") if x and x[:5] != b"-----")
        data = binascii.a2b_base64(body)
    return data


def context(ca_path):
    # One context per CA file, kept for the life of the program: parsing the CA costs heap.
    global _ctx, _ca_path
    if _ctx is None or _ca_path != ca_path:
        if not ca_path:
            raise ValueError("https needs ca_cert")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=_der(ca_path))
        _ctx, _ca_path = ctx, ca_path
    return _ctx
