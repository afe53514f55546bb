"""Helpers shared by the Raft tests that run asyncio code over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


def run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    """Run a coroutine in a fresh event loop, failing it after `timeout` seconds instead of hanging."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
