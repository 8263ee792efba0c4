"""One JWT decode for every issuer's access tokens, its failures as `InvalidToken` reasons."""

from __future__ import annotations

from typing import Any

import jwt

from provisioning.service.auth.errors import InvalidToken


def decode_checked(
    token: str,
    key: Any,
    alg: str,
    audience: str | list[str],
    issuer: str,
    leeway_s: float,
    required: list[str],
) -> dict[str, Any]:
    """The claims of `token` signed by `key` with `alg` (pinned: never the header's choice),
    for `audience`, from `issuer`, within `leeway_s` of `exp`/`nbf`, with `required` present."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=leeway_s,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("token from another issuer") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid token") from None
    return claims
