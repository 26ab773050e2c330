"""How the engine's own transport errors during a pull are classified (no engine:
the streamed body's failure is what is under test)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import urllib3.exceptions

from agent.runtime.images import ImagePuller, RegistryUnreachable
from common.image_reference import parse_image_reference


class _Response:
    status_code = 200

    def close(self) -> None:
        pass


class _StallingEngine:
    """An engine API whose pull stream dies with urllib3's read timeout, as the
    streamed body does when the engine waits on a registry that stopped sending."""

    def _url(self, path: str) -> str:
        return path

    def _post(self, *args: Any, **kwargs: Any) -> _Response:
        return _Response()

    def _stream_helper(self, response: _Response, decode: bool) -> Iterator[dict[str, Any]]:
        yield {"status": "Pulling fs layer", "id": "abc"}
        raise urllib3.exceptions.ReadTimeoutError(None, "/images/create", "Read timed out.")  # type: ignore[arg-type]


def test_a_read_timeout_of_the_pull_stream_is_an_unreachable_registry() -> None:
    image = "127.0.0.1:5999/layered:latest"
    with ThreadPoolExecutor(1) as executor:
        puller = ImagePuller(_StallingEngine(), executor, stall_seconds=1.0)  # type: ignore[arg-type]
        with pytest.raises(RegistryUnreachable):
            puller._pull_blocking(parse_image_reference(image), image, None, lambda _: None)
