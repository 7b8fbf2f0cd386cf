"""Background work ends with its owner (`transport.background`): a close cancels every task the
owner started and returns only once each has finished unwinding."""

from __future__ import annotations

import asyncio

from transport.background import Background


def test_an_owners_close_cancels_and_awaits_what_it_started() -> None:
    unwound: list[str] = []

    async def work(name: str) -> None:
        try:
            await asyncio.Event().wait()  # runs until cancelled
        finally:
            await asyncio.sleep(0)  # unwinding takes a turn of the loop
            unwound.append(name)

    async def scenario() -> None:
        owned = Background()
        tasks = [owned.start(work(name)) for name in ("a", "b")]
        owned.start(asyncio.sleep(0))  # one that ends by itself leaves the set
        await asyncio.sleep(0.01)
        assert len(owned) == 2
        await owned.stop()
        assert sorted(unwound) == ["a", "b"] and all(t.cancelled() for t in tasks)
        assert len(owned) == 0

    asyncio.run(scenario())


def test_a_task_that_failed_does_not_stop_the_close() -> None:
    async def fails() -> None:
        raise RuntimeError("its own error, logged by itself")

    async def scenario() -> None:
        owned = Background()
        task = owned.start(fails())
        await asyncio.sleep(0)
        await owned.stop()
        assert task.done()

    asyncio.run(scenario())
