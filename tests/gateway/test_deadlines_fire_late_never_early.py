"""``corral.gateway.deadlines``: cheap one-shot deadlines that share one loop timer. A deadline
fires once, never before it is due and at most its granularity late; a cancelled one never."""

import asyncio

import pytest

from corral.gateway import deadlines
from corral.gateway.deadlines import MIN_GRANULARITY_S, RELATIVE_GRANULARITY

pytestmark = pytest.mark.timeout(30)


async def fired_at(delay: float) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    deadlines.arm(delay, lambda: done.set_result(loop.time()))
    return await done


async def test_a_deadline_fires_once_not_early_and_within_its_granularity() -> None:
    loop = asyncio.get_running_loop()
    for delay in (0.02, 0.05, 0.3):
        start = loop.time()
        at = await fired_at(delay)
        slack = max(MIN_GRANULARITY_S, 2 * delay * RELATIVE_GRANULARITY)
        assert start + delay <= at <= start + delay + slack + 0.05  # + scheduling noise


async def test_a_cancelled_deadline_never_fires_and_others_in_its_bucket_do() -> None:
    fired: list[str] = []
    kept = deadlines.arm(0.03, lambda: fired.append("kept"))
    dropped = deadlines.arm(0.03, lambda: fired.append("dropped"))
    dropped.cancel()
    await asyncio.sleep(0.1)
    kept.cancel()  # after it fired: harmless
    assert fired == ["kept"]


async def test_an_earlier_deadline_armed_later_is_not_held_up_by_a_far_one() -> None:
    loop = asyncio.get_running_loop()
    far = deadlines.arm(300, lambda: None)
    start = loop.time()
    at = await fired_at(0.02)
    far.cancel()
    assert at - start < 0.2


async def test_thousands_of_far_deadlines_share_few_buckets() -> None:
    armed = [deadlines.arm(300 + i * 1e-4, lambda: None) for i in range(5000)]
    wheel = deadlines._wheels[asyncio.get_running_loop()]
    assert len(wheel._buckets) <= 2  # 5.12 s granularity at 300 s
    for deadline in armed:
        deadline.cancel()


async def test_a_task_cancelled_by_its_deadline_and_only_then() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(slow())
    deadline = deadlines.arm(0.02, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.cancel()
    quick = asyncio.ensure_future(asyncio.sleep(0))
    deadlines.arm(0.05, quick.cancel).cancel()
    await quick
    assert not quick.cancelled()
