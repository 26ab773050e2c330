"""The agent's console WebSocket as its clients see it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


async def next_frame(ws: aiohttp.ClientWebSocketResponse, event: str) -> list[Any]:
    """The args of the next frame named `event` (other frames skipped; 10 s at most)."""
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.receive_str())
            if message["event"] == event:
                return list(message["args"])
