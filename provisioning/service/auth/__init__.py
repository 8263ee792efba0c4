"""OAuth 2.0 authorization server: client credentials (RFC 6749 §4.4), JWT access tokens
(RFC 9068), JWKS, metadata (RFC 8414), introspection (RFC 7662) and the shared token verifier."""
