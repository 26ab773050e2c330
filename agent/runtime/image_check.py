"""Whether an image can be had, without pulling it: present in the local image store,
or the registry serves its manifest with the given credentials (the engine's
distribution inspect, a manifest HEAD/GET). The control plane asks this when a
deployment is created or its image changes, to refuse an image that cannot work."""

from __future__ import annotations

from typing import Any

import docker
import docker.auth
import docker.errors
import requests

from agent.runtime.images import (
    PullFailed,
    RegistryCredentials,
    RegistryUnreachable,
    classify_pull_error,
    engine_error_text,
)
from common.image_reference import ImageReference


def image_available_blocking(
    engine: docker.APIClient,
    reference: ImageReference,
    image: str,
    credentials: RegistryCredentials | None,
    timeout: float,
    *,
    use_local: bool = True,
) -> bool:
    """True when `image` is in the local store (looked at only when `use_local`), False
    when it is not (or not looked at) but the registry serves its manifest (it can be
    pulled). Raises ImageUnknown, RegistryDenied or
    RegistryUnreachable (a registry that does not answer within `timeout` seconds),
    or PullFailed for an answer none of those name. Blocking: run it in a thread."""
    api: Any = engine  # the raw GET: docker-py's helper takes no timeout
    if use_local and _present(api, image):
        return True
    auth: dict[str, Any] = {}
    if credentials is not None:
        auth = {
            "username": credentials.username,
            "password": credentials.password,
            "serveraddress": credentials.server_address or reference.registry,
        }
    headers = {"X-Registry-Auth": docker.auth.encode_header(auth)}
    url = api._url("/distribution/{0}/json", image)
    try:
        response = api._get(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise RegistryUnreachable(
            f"the registry of {image!r} did not answer in {timeout:g}s: {type(exc).__name__}"
        ) from exc
    if response.status_code >= 400:
        raise classify_pull_error(image, engine_error_text(response))
    return False


def _present(api: Any, image: str) -> bool:
    try:
        api.inspect_image(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 404:
            raise PullFailed(f"the engine could not inspect {image!r}: {exc}") from exc
        return False
