"""ByteBudget: the bound on file content held in memory while uploads are in flight."""

from __future__ import annotations

import anyio

from server.objects.budget import ByteBudget


async def test_reservations_never_exceed_the_capacity_and_all_are_returned() -> None:
    budget = ByteBudget(capacity=100)
    peak = 0
    held_once = 0

    async def hold(size: int) -> None:
        nonlocal peak, held_once
        async with budget.reserve(size):
            peak = max(peak, budget.in_use)
            held_once += 1
            await anyio.lowlevel.checkpoint()  # let the others try to get in meanwhile

    async with anyio.create_task_group() as tasks:
        for size in [40, 40, 40, 30, 60, 10, 100, 25] * 5:
            tasks.start_soon(hold, size)
    assert held_once == 40 and budget.in_use == 0
    assert peak <= 100


async def test_a_reservation_larger_than_the_budget_runs_alone_instead_of_waiting_forever() -> None:
    budget = ByteBudget(capacity=10)
    async with budget.reserve(50):
        assert budget.in_use == 50
    assert budget.in_use == 0


async def test_a_cancelled_holder_gives_its_bytes_back() -> None:
    budget = ByteBudget(capacity=10)
    with anyio.CancelScope() as scope:
        async with budget.reserve(8):
            scope.cancel()
            await anyio.sleep_forever()
    assert budget.in_use == 0
    with anyio.fail_after(5):
        async with budget.reserve(10):
            assert budget.in_use == 10
