"""Unit tests of the credential formats: API keys, access tokens, rate limits."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
import pytest

from controlplane.security.access_tokens import (
    AccessTokenError,
    issue_access_token,
    verify_access_token,
)
from controlplane.security.credentials import (
    API_KEY_LENGTH,
    ServerKeys,
    looks_like_api_key,
    new_api_key,
    visible_prefix,
)
from controlplane.security.rate_limit import SlidingWindowLimiter, retry_after_header

KEYS = ServerKeys("a-server-secret-of-some-length")


def test_api_keys_carry_a_checksum() -> None:
    key = new_api_key()
    assert key.startswith("enc_")
    assert len(key) == API_KEY_LENGTH
    assert looks_like_api_key(key)
    assert not looks_like_api_key(key[:-1] + ("0" if key[-1] != "0" else "1"))
    assert not looks_like_api_key(key + "x")
    assert visible_prefix(key) == key[:12]
    assert new_api_key() != key


def test_credential_hashes_are_keyed() -> None:
    other = ServerKeys("another-server-secret-value")
    assert KEYS.credential_hash("x") == KEYS.credential_hash("x")
    assert KEYS.credential_hash("x") != other.credential_hash("x")
    assert KEYS.jwt_key != other.jwt_key
    with pytest.raises(ValueError, match="16"):
        ServerKeys("short")
    with pytest.raises(RuntimeError):
        ServerKeys().credential_hash("x")


def test_access_tokens_round_trip_and_expire() -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    token, _ = issue_access_token(
        KEYS.jwt_key, user_id=user, session_id=session, ttl=timedelta(minutes=15)
    )
    claims = verify_access_token(KEYS.jwt_key, token)
    assert (claims.user_id, claims.session_id) == (user, session)
    expired, _ = issue_access_token(
        KEYS.jwt_key, user_id=user, session_id=session, ttl=timedelta(seconds=-5)
    )
    with pytest.raises(AccessTokenError, match="expired"):
        verify_access_token(KEYS.jwt_key, expired)


def test_access_tokens_refuse_other_algorithms_and_missing_claims() -> None:
    claims = {"iss": "encedeus", "sub": str(uuid.uuid4()), "sid": str(uuid.uuid4()),
              "typ": "access", "iat": 1, "exp": 4_000_000_000, "jti": "x"}  # fmt: skip
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(AccessTokenError):
        verify_access_token(KEYS.jwt_key, unsigned)
    other_alg = jwt.encode(claims, KEYS.jwt_key * 2, algorithm="HS512")
    with pytest.raises(AccessTokenError):
        verify_access_token(KEYS.jwt_key, other_alg)
    for missing in ("sid", "exp", "typ"):
        partial = {k: v for k, v in claims.items() if k != missing}
        with pytest.raises(AccessTokenError):
            verify_access_token(KEYS.jwt_key, jwt.encode(partial, KEYS.jwt_key, algorithm="HS256"))
    wrong_type = jwt.encode({**claims, "typ": "refresh"}, KEYS.jwt_key, algorithm="HS256")
    with pytest.raises(AccessTokenError):
        verify_access_token(KEYS.jwt_key, wrong_type)


def test_sliding_window_limits_per_key_and_recovers() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(2, 10, clock=lambda: now[0])
    assert limiter.hit("a") is None
    assert limiter.hit("a") is None
    assert limiter.hit("a") == pytest.approx(10)
    assert limiter.hit("b") is None
    now[0] = 10.01
    assert limiter.hit("a") is None
    assert retry_after_header(0.2) == "1"


def test_sliding_window_memory_is_bounded() -> None:
    limiter = SlidingWindowLimiter(1, 60, max_keys=3)
    for key in "abcd":
        limiter.hit(key)
    assert limiter.hit("a") is None  # forgotten, so allowed again
