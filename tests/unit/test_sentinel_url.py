"""The ``redis+sentinel://`` form of ``ORCH_REDIS_URL``, parsed by config.settings.parse_redis_url.

Valid URLs built from random parts parse back to those parts; each broken rule is an error that
names the part and the rule. The WAIT settings are checked against the socket timeout.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from config.settings import BROKER_SCHEMES, SENTINEL_PORT, Settings, parse_redis_url, redact_url

_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_HOST = st.one_of(
    st.builds(lambda labels: ".".join(labels), st.lists(_LABEL, min_size=1, max_size=3)),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_PORT = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
_SERVICE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=20)
_SECRET = st.text(min_size=1, max_size=16).filter(lambda text: "\x00" not in text)


def _address(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


@given(
    hosts=st.lists(st.tuples(_HOST, _PORT), min_size=1, max_size=4),
    service=_SERVICE,
    db=st.one_of(st.none(), st.integers(min_value=0, max_value=15)),
    username=st.one_of(st.none(), _LABEL),
    password=st.one_of(st.none(), _SECRET),
    sentinel_password=st.one_of(st.none(), _SECRET),
)
def test_valid_sentinel_urls_round_trip(
    hosts: list[tuple[str, int | None]],
    service: str,
    db: int | None,
    username: str | None,
    password: str | None,
    sentinel_password: str | None,
) -> None:
    userinfo = ""
    if username is not None or password is not None:
        userinfo = quote(username or "", safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    url = f"redis+sentinel://{userinfo}{','.join(_address(h, p) for h, p in hosts)}/{service}"
    if db is not None:
        url += f"/{db}"
    if sentinel_password is not None:
        url += f"?sentinel_password={quote(sentinel_password, safe='')}"

    endpoint = parse_redis_url(url)

    assert endpoint.is_sentinel
    assert endpoint.sentinels == tuple((h, SENTINEL_PORT if p is None else p) for h, p in hosts)
    assert (endpoint.service, endpoint.db) == (service, db or 0)
    assert (endpoint.username, endpoint.password) == (username or None, password)
    assert endpoint.query.get("sentinel_password") == sentinel_password
    assert (endpoint.host, endpoint.port) == (None, None)  # nobody may connect to a Sentinel as to a master
    redacted = redact_url(url)
    if password is not None:
        assert f":{quote(password, safe='')}@" not in redacted
        assert ":***@" in redacted
    if sentinel_password is not None:
        assert redacted.endswith("sentinel_password=***")
    assert Settings(redis_url=url).redis == endpoint


@pytest.mark.parametrize(
    ("url", "names", "rule"),
    [
        ("redis+sentinel:///mymaster", "Sentinel host", "at least one"),
        ("redis+sentinel://s1:26379,,s2/mymaster", "Sentinel host", "must not be empty"),
        ("redis+sentinel://s1:port/mymaster", "Sentinel port", "number from 1 to 65535"),
        ("redis+sentinel://s1:70000/mymaster", "Sentinel port", "number from 1 to 65535"),
        ("redis+sentinel://::1:26379/mymaster", "Sentinel host", "IPv6 address in brackets"),
        ("redis+sentinel://[::1/mymaster", "host", "in brackets"),
        ("redis+sentinel://[::1]x/mymaster", "Sentinel host", r"\[ipv6-address\]"),
        ("redis+sentinel://s1:26379", "service name", "first path segment"),
        ("redis+sentinel://s1:26379/", "service name", "first path segment"),
        ("redis+sentinel://s1/my%20master", "service name", "letters, digits"),
        ("redis+sentinel://s1/mymaster/zero", "database", "number"),
        ("redis+sentinel://s1/mymaster/0/extra", "path", "/<service>"),
        ("redis+sentinel://s1/mymaster?db=2", "query parameter", "sentinel_password"),
    ],
)
def test_invalid_sentinel_urls_name_the_part_and_the_rule(url: str, names: str, rule: str) -> None:
    with pytest.raises(ValueError, match=names) as caught:
        parse_redis_url(url)
    assert caught.match(rule)
    with pytest.raises(ValidationError, match=names):
        Settings(redis_url=url)


def test_a_sentinel_broker_is_refused_saying_why() -> None:
    for url in ("sentinel://s1:26379", "redis+sentinel://s1:26379/mymaster"):
        with pytest.raises(ValueError, match="scheme"):
            parse_redis_url(url, schemes=BROKER_SCHEMES)
    with pytest.raises(ValidationError, match="kombu's Sentinel broker transport"):
        Settings(broker_url="sentinel://s1:26379")


def test_a_password_in_a_sentinel_url_never_shows_in_the_settings_repr() -> None:
    settings = Settings(redis_url="redis+sentinel://:hunter2@s1,s2/mymaster/1?sentinel_password=swordfish")
    assert "hunter2" not in repr(settings)
    assert "swordfish" not in repr(settings)


def test_wait_settings_default_to_no_wait_and_must_fit_in_the_socket_timeout() -> None:
    settings = Settings()
    assert (settings.redis_wait_replicas, settings.redis_wait_timeout_ms) == (0, 1000)
    assert Settings(redis_wait_replicas=1, redis_wait_timeout_ms=4000).redis_wait_replicas == 1
    with pytest.raises(ValidationError, match="redis_wait_timeout_ms .* must be below redis_socket_timeout_s"):
        Settings(redis_wait_replicas=1, redis_wait_timeout_ms=5000)
    with pytest.raises(ValidationError, match="redis_wait_replicas"):
        Settings(redis_wait_replicas=-1)
    with pytest.raises(ValidationError, match="redis_wait_timeout_ms"):
        Settings(redis_wait_timeout_ms=0)
