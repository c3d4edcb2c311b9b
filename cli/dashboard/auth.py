"""Who may use the dashboard: the optional token, and the rule for where it may listen.

With a token, every request must show it: as ``Authorization: Bearer <token>`` (scripts), or
as the signed cookie a browser receives by opening any page once with ``?token=<token>``.
Without one, the dashboard trusts everyone who can reach it, so it may listen only on a loopback
address.
"""

from __future__ import annotations

import hmac
import ipaddress

#: Environment variable read when ``--token`` is not given (also an ``ORCH_*`` setting).
TOKEN_ENV = "ORCH_DASHBOARD_TOKEN"
#: Name of the signed cookie that carries a browser's login.
COOKIE = "orch_dashboard"
#: What the cookie holds once signed: a marker; the signature (a per-process secret) is the proof.
COOKIE_VALUE = "authenticated"


def token_matches(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the token, compared in constant time."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (only those may go unprotected)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token.

    Raises:
        ValueError: naming the host and the way out.
    """
    if token is None and not is_loopback(host):
        raise ValueError(
            f"--host {host} is not a loopback address: give --token (or {TOKEN_ENV}) to listen there"
        )
