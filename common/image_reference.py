"""Container image references (`registry/repository:tag@digest`), parsed the way
Docker's distribution/reference grammar reads them, so that the control plane refuses
at create what the engine would refuse at pull, and both sides agree on which
registry an image comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.outbound_policy import address_refusal, numeric_address

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
MAX_NAME_LENGTH = 255


class InvalidReference(ValueError):
    """The text is not an image reference; the message says why (without repeating
    the text, so that it can be shown as a validation problem)."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed reference. `registry` is the host[:port] the image comes from
    (docker.io when none is named); `repository` the path in that registry, with
    Docker Hub's implicit `library/` for one-component names."""

    registry: str
    repository: str
    tag: str
    digest: str

    @property
    def name(self) -> str:
        """registry/repository, the form that prefixes and allowlists are matched on."""
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        """True when the reference names a digest (it cannot move)."""
        return bool(self.digest)

    def with_digest(self, digest: str) -> str:
        """The reference that names exactly `digest` (sha256:...) in this repository,
        spelled as the engine spells it."""
        return f"{self.familiar_name}@{digest}"

    @property
    def familiar_name(self) -> str:
        """The repository as the engine shows it (no docker.io/library/ prefix)."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        return self.repository.removeprefix("library/")


def parse_image_reference(text: str) -> ImageReference:
    """Parse `text`; InvalidReference naming the problem. A name without a tag or
    digest means the tag `latest`."""
    match = _REFERENCE.match(text)
    if match is None:
        raise InvalidReference(
            "not a valid image reference "
            "(expected [registry/]repository[:tag][@digest], lower-case repository)"
        )
    domain, path = match.group("domain"), match.group("path")
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"):
        # The first component names a registry only when it looks like a host.
        path, domain = f"{domain}/{path}", None
    if domain is not None and domain.lower() != domain and not domain.startswith("["):
        raise InvalidReference("the registry host of an image reference must be lower-case")
    if len(path) + len(domain or "") + 1 > MAX_NAME_LENGTH:
        raise InvalidReference(f"an image name is at most {MAX_NAME_LENGTH} characters long")
    registry = domain or DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    digest = match.group("digest") or ""
    tag = match.group("tag") or ("" if digest else "latest")
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)


def registry_host(registry: str) -> str:
    """The host part of a registry `host[:port]` (an IPv6 literal without brackets)."""
    if registry.startswith("["):
        return registry[1:].partition("]")[0]
    return registry.rpartition(":")[0] if ":" in registry else registry


def private_registry_refusal(reference: ImageReference) -> str | None:
    """Why the registry of `reference` is not a public one, or None: `localhost`
    names and IP literals that common.outbound_policy refuses for tenants (loopback,
    private, link-local, CGNAT, unspecified...). Registry names that resolve to such
    addresses are not judged here (that would need DNS)."""
    host = registry_host(reference.registry).rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"registry {reference.registry!r} names the local host"
    address = numeric_address(host)
    if address is None:
        return None
    refusal = address_refusal(address)
    return None if refusal is None else f"registry {reference.registry!r}: {refusal}"
