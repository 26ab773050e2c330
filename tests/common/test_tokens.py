from __future__ import annotations

import jwt
import pytest

from common.tokens import (
    TokenError,
    TokenExpiredError,
    sign_server_token,
    verify_server_token,
)

SECRET = "node-secret-0123456789abcdef0123456789"


def sign(**overrides: object) -> str:
    args: dict[str, object] = {
        "node_id": "node-1",
        "user_id": "user-1",
        "server_id": "srv-1",
        "permissions": ["console.read", "console.write"],
        "scope": "console",
        "ttl_seconds": 60,
        "now": 1_000_000.0,
    }
    args.update(overrides)
    return sign_server_token(SECRET, **args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    claims = verify_server_token(SECRET, sign(), node_id="node-1", scope="console", now=1_000_010)
    assert claims.server_id == "srv-1"
    assert claims.allows("console.write")
    assert not claims.allows("files.write")


@pytest.mark.parametrize(
    ("token_kwargs", "verify_kwargs", "error"),
    [
        ({}, {"node_id": "node-2"}, TokenError),
        ({}, {"scope": "file-upload"}, TokenError),
        ({}, {"now": 1_000_060.0}, TokenExpiredError),
        ({}, {"not_before": 1_000_001.0}, TokenError),
    ],
)
def test_refusals(
    token_kwargs: dict[str, object], verify_kwargs: dict[str, object], error: type[Exception]
) -> None:
    kwargs: dict[str, object] = {"node_id": "node-1", "scope": "console", "now": 1_000_010.0}
    kwargs.update(verify_kwargs)
    with pytest.raises(error):
        verify_server_token(SECRET, sign(**token_kwargs), **kwargs)  # type: ignore[arg-type]


def test_wrong_secret_other_algorithm_and_long_ttl() -> None:
    with pytest.raises(TokenError):
        verify_server_token("x" * 40, sign(), node_id="node-1", scope="console", now=1_000_010)
    forged = jwt.encode({"aud": "node-1"}, key=None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        verify_server_token(SECRET, forged, node_id="node-1", scope="console")
    with pytest.raises(ValueError, match="ttl"):
        sign(ttl_seconds=601)
    long_lived = jwt.encode(
        {
            "aud": "node-1",
            "sub": "u",
            "server": "s",
            "permissions": [],
            "scope": "console",
            "iat": 1_000_000,
            "exp": 1_000_000 + 3600,
            "jti": "x",
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(TokenError, match="10 minutes"):
        verify_server_token(SECRET, long_lived, node_id="node-1", scope="console", now=1_000_010)


def test_non_numeric_times_are_a_token_error() -> None:
    odd = jwt.encode(
        {
            "aud": "node-1", "sub": "u", "server": "s", "permissions": [], "scope": "console",
            "iat": "yesterday", "exp": "tomorrow", "jti": "x",
        },
        SECRET,
        algorithm="HS256",
    )  # fmt: skip
    with pytest.raises(TokenError):
        verify_server_token(SECRET, odd, node_id="node-1", scope="console", now=1_000_010)


def test_an_exec_token_carries_its_id_and_details() -> None:
    token = sign(scope="exec", token_id="session-1", details={"command": ["ls", "-l"]})
    claims = verify_server_token(SECRET, token, node_id="node-1", scope="exec", now=1_000_010)
    assert (claims.token_id, dict(claims.details)) == ("session-1", {"command": ["ls", "-l"]})
    with pytest.raises(TokenError, match="scope 'exec' is not 'console'"):
        verify_server_token(SECRET, token, node_id="node-1", scope="console", now=1_000_010)
    plain = verify_server_token(SECRET, sign(), node_id="node-1", scope="console", now=1_000_010)
    assert plain.details == {}
    assert len(plain.token_id) == 16


def test_details_that_are_not_an_object_are_refused() -> None:
    odd = jwt.encode(
        {
            "aud": "node-1", "sub": "u", "server": "s", "permissions": [], "scope": "exec",
            "iat": 1_000_000, "exp": 1_000_060, "jti": "j", "details": ["ls"],
        },
        SECRET,
        algorithm="HS256",
    )  # fmt: skip
    with pytest.raises(TokenError, match="details must be an object"):
        verify_server_token(SECRET, odd, node_id="node-1", scope="exec", now=1_000_010)
