"""Image references parsed as Docker's grammar reads them."""

from __future__ import annotations

import pytest

from common.image_reference import InvalidReference, parse_image_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", ""),
        ("encedeus/busybox:latest", "docker.io", "encedeus/busybox", "latest", ""),
        ("127.0.0.1:5000/t-x:v1", "127.0.0.1:5000", "t-x", "v1", ""),
        ("localhost/app", "localhost", "app", "latest", ""),
        ("ghcr.io/team/app/web:1.2.3", "ghcr.io", "team/app/web", "1.2.3", ""),
        (f"ghcr.io/team/app@{DIGEST}", "ghcr.io", "team/app", "", DIGEST),
        (f"app:v1@{DIGEST}", "docker.io", "library/app", "v1", DIGEST),
    ],
)
def test_references_parse(text: str, registry: str, repository: str, tag: str, digest: str) -> None:
    reference = parse_image_reference(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Upper",
        "a b",
        "app:",
        "app@sha256:short",
        "-app",
        "app:-tag",
        "a//b",
        "HOST.io/x",
        "a\x00b",
    ],
)
def test_bad_references_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(InvalidReference) as refused:
        parse_image_reference(text)
    assert not text or text not in str(refused.value)


def test_digests_are_spelled_as_the_engine_spells_them() -> None:
    assert parse_image_reference("busybox:1").with_digest(DIGEST) == f"busybox@{DIGEST}"
    assert (
        parse_image_reference("127.0.0.1:5000/x:v1").with_digest(DIGEST)
        == f"127.0.0.1:5000/x@{DIGEST}"
    )
