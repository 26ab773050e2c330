"""Proof that an account controls a domain: a DNS TXT record `_encedeus.<domain>`
holding the verification token (looked up with the configured nameservers, the
system's by default), or the token served over HTTP at
`http://<domain>/.well-known/encedeus/<token>` once the domain points at the ingress
(fetched with the guarded outbound client like every tenant-directed request)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from common.outbound import OutboundError, OutboundPolicy, fetch_bytes

CHALLENGE_PATH = "/.well-known/encedeus/"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the proof was found, and why not per method."""

    verified: bool
    method: str = ""
    reasons: tuple[tuple[str, str], ...] = ()


def txt_name(domain: str) -> str:
    return f"_encedeus.{domain}"


def _resolver(nameservers: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver:
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        addresses, ports = [], []
        for entry in nameservers:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            addresses.append(host or entry)
            ports.append(int(port) if port else 53)
        resolver.nameservers = addresses
        resolver.port = ports[0]
    resolver.lifetime = timeout
    return resolver


async def txt_proof(domain: str, token: str, nameservers: Sequence[str], lifetime: float) -> str:
    """Empty when a TXT record of `_encedeus.<domain>` is exactly `token`, else why not."""
    try:
        answer = await _resolver(nameservers, lifetime).resolve(txt_name(domain), "TXT")
    except dns.resolver.NXDOMAIN:
        return f"no TXT record at {txt_name(domain)}"
    except (dns.exception.DNSException, OSError) as exc:
        return f"TXT lookup of {txt_name(domain)} failed: {exc}"
    values = {b"".join(record.strings).decode(errors="replace") for record in answer}
    return "" if token in values else f"the TXT records of {txt_name(domain)} lack the token"


async def http_proof(domain: str, token: str, policy: OutboundPolicy, port: int = 80) -> str:
    """Empty when the domain serves the token at its challenge path, else why not.
    (`port` other than 80 is for tests: real checks always use port 80.)"""
    netloc = domain if port == 80 else f"{domain}:{port}"
    try:
        fetched = await fetch_bytes(f"http://{netloc}{CHALLENGE_PATH}{token}", policy)
    except OutboundError as exc:
        return f"fetching the HTTP token failed: {exc}"
    if fetched.content.decode(errors="replace").strip() != token:
        return "the HTTP token does not match"
    return ""


async def verify_domain(
    domain: str, token: str, *, nameservers: Sequence[str], policy: OutboundPolicy
) -> Verdict:
    """TXT first (it works before the domain points anywhere), then HTTP."""
    dns_reason = await txt_proof(domain, token, nameservers, min(policy.timeout_seconds, 10))
    if not dns_reason:
        return Verdict(True, "dns")
    http_reason = await http_proof(domain, token, policy)
    if not http_reason:
        return Verdict(True, "http")
    return Verdict(False, reasons=(("dns", dns_reason), ("http", http_reason)))
