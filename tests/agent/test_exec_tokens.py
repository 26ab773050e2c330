"""The agent's memory of spent exec tokens: one use each, bounded, forgotten at exp."""

from __future__ import annotations

import pytest

from agent.ws.exec import ExecRefused, SpentTokens
from common.tokens import ServerToken


def token(token_id: str, expires_at: float) -> ServerToken:
    return ServerToken(
        node_id="n", user_id="u", server_id="s", permissions=("exec",), scope="exec",
        issued_at=expires_at - 60, expires_at=expires_at, token_id=token_id,
    )  # fmt: skip


def test_a_token_id_is_claimed_once_until_it_expires() -> None:
    spent = SpentTokens()
    spent.claim(token("a", 100.0), now=50.0)
    with pytest.raises(ExecRefused) as refused:
        spent.claim(token("a", 100.0), now=60.0)
    assert refused.value.code == "token_used"
    spent.claim(token("b", 200.0), now=100.0)  # "a" expired: forgotten
    assert len(spent) == 1


def test_the_set_is_bounded() -> None:
    spent = SpentTokens(capacity=2)
    spent.claim(token("a", 100.0), now=0.0)
    spent.claim(token("b", 150.0), now=0.0)
    with pytest.raises(ExecRefused) as refused:
        spent.claim(token("c", 150.0), now=10.0)
    assert refused.value.code == "busy"
    spent.claim(token("c", 150.0), now=100.0)
    assert len(spent) == 2
