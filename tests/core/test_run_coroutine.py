"""The tests' coroutine runner works while another event loop counts as running on this thread, as
the console tests' session-long sync Playwright makes it (CI failure at stop 28: asyncio.run
refused in tests/server/test_chunked_body_limit.py after the console tests ran on the same worker)."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import run_coroutine


async def _answer(value):
    await asyncio.sleep(0)
    if isinstance(value, Exception):
        raise value
    return value


def test_a_coroutine_runs_and_raises_while_another_loop_is_running_here():
    other = asyncio.new_event_loop()
    asyncio.events._set_running_loop(other)  # what sync_playwright leaves on the main thread
    try:
        refused = _answer(1)
        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(refused)  # the failure that CI saw
        refused.close()
        assert run_coroutine(_answer(42)) == 42
        with pytest.raises(LookupError, match="its own"):
            run_coroutine(_answer(LookupError("its own error")))
    finally:
        asyncio.events._set_running_loop(None)
        other.close()
