"""SocketAdmission: unauthenticated sockets per address, authenticated per server."""

from __future__ import annotations

from agent.ws.admission import SocketAdmission, origin_allowed


def test_unauthenticated_sockets_count_against_their_address_only() -> None:
    admission = SocketAdmission(max_unauthenticated_per_address=2, max_authenticated_per_server=1)
    assert admission.open("a1", "10.0.0.1")
    assert admission.open("a2", "10.0.0.1")
    assert not admission.open("a3", "10.0.0.1")
    assert admission.open("b1", "10.0.0.2")
    assert not admission.server_full("s")
    assert admission.authenticate("b1", "10.0.0.2", "s")
    assert admission.authenticate("b1", "10.0.0.2", "s")  # idempotent
    assert admission.server_full("s")
    assert not admission.authenticate("a1", "10.0.0.1", "s")  # full: stays pending
    assert not admission.open("a3", "10.0.0.1")
    admission.close("a1", "10.0.0.1", "s")
    assert admission.open("a3", "10.0.0.1")
    admission.close("b1", "10.0.0.2", "s")
    assert not admission.server_full("s")
    assert admission.open("b2", "10.0.0.2")  # b1 no longer holds the address's allowance


def test_origin_check_refuses_other_sites_pages_only() -> None:
    panel = "https://panel.example.test"
    assert origin_allowed("https://evil.example.test", [panel]) is False
    assert origin_allowed(panel, [panel]) is True
    # No Origin: not a browser's page (the CLI, scripts); the token still decides.
    assert origin_allowed(None, [panel]) is True
    assert origin_allowed("", [panel]) is True
    assert origin_allowed("https://anything.example.test", []) is True
