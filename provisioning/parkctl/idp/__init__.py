"""parkctl's side of an external authorization server: registering boards as its clients.

Runs on the operator's host (parkctl), never in the service: `auth0` speaks Auth0's Management
API v2, `dcr` RFC 7591/7592 dynamic registration; `twosided` keeps the external client and the
device record in parkfleet in step. Imported only by the verbs given `--idp`.
"""
