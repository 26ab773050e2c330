"""Node-secret authentication for every gRPC call except the health service."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # the runtime classes are not generic
    _Interceptor = grpc.aio.ServerInterceptor
HEALTH_PREFIX = "/grpc.health.v1.Health/"


async def _deny_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong node secret")


class NodeSecretInterceptor(_Interceptor):
    """Lets a call through only with metadata `authorization: Bearer <node secret>`
    (compared in constant time); answers UNAUTHENTICATED otherwise. The standard health
    service stays open so that load balancers and systemd checks need no secret."""

    def __init__(self, secret: str) -> None:
        self._expected = f"Bearer {secret}".encode()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method)
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else bytes(value)
        if hmac.compare_digest(presented, self._expected):
            return handler
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _deny_unary, request_deserializer=handler.request_deserializer
            )
        return grpc.unary_unary_rpc_method_handler(
            _deny_unary, request_deserializer=handler.request_deserializer
        )
