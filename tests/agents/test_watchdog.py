"""The watchdog against real processes: a SIGKILLed server's agent groups end; close() ends what is still watched."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.agents.process_groups import ProcessIdentity, identify
from server.agents.watchdog import Watchdog
from server.errors import Unavailable
from tests.agents.groups import (
    DEADLINE_S,
    FIXTURES,
    ROOT,
    WorkerGroup,
    Workers,
    assert_group_gone,
    eventually,
    file_size,
    is_running,
    kill_groups,
    read_line,
    wait_until,
)

HOST = FIXTURES / "watchdog_host.py"


@pytest.fixture
async def watchdog() -> AsyncIterator[Watchdog]:
    started = await Watchdog.start(grace_s=0.3)
    try:
        yield started
    finally:
        await started.close()


def watch(watchdog: Watchdog, group: WorkerGroup) -> None:
    watchdog.watch(group.pgid, group.identity.start_time)


def test_a_sigkilled_servers_agent_group_and_watchdog_exit(tmp_path: Path) -> None:
    output = tmp_path / "host-worker.out"
    host = subprocess.Popen(
        [sys.executable, str(HOST), str(output), "0.3"], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    leftovers: list[ProcessIdentity] = []
    try:
        assert host.stdout is not None
        pids = json.loads(read_line(host.stdout))
        for name in ("watchdog", "leader", "grandchild"):
            identity = identify(pids[name])
            assert identity is not None, f"the {name} is not running"
            leftovers.append(identity)
        wait_until(lambda: file_size(output) > 0, "the grandchild writes")

        host.kill()
        assert host.wait(timeout=DEADLINE_S) == -signal.SIGKILL

        # The worker ignores SIGTERM: only the watchdog's SIGKILL after its grace period ends it.
        wait_until(
            lambda: not any(is_running(pids[name]) for name in ("watchdog", "leader", "grandchild")),
            "the watchdog, the worker and its grandchild are gone",
        )
        assert_group_gone(pids["leader"], [pids["leader"], pids["grandchild"]], output)
    finally:
        kill_groups(leftovers)
        host.kill()
        host.wait(timeout=DEADLINE_S)
        if host.stdout is not None:
            host.stdout.close()


async def test_close_ends_a_group_still_watched(watchdog: Watchdog, workers: Workers) -> None:
    stubborn = workers.spawn(on_term="ignore")
    polite = workers.spawn(on_term="exit")
    watch(watchdog, stubborn)
    watch(watchdog, polite)

    await watchdog.close()

    # close() returns once the watchdog has exited, and it exits once the groups are gone.
    assert not is_running(watchdog.pid)
    stubborn.assert_gone()
    polite.assert_gone()
    assert stubborn.process.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    assert polite.process.wait(timeout=DEADLINE_S) == 0


async def test_close_leaves_a_forgotten_group_alone(watchdog: Watchdog, workers: Workers) -> None:
    kept = workers.spawn(on_term="exit")
    ended = workers.spawn(on_term="exit")
    watch(watchdog, kept)
    watch(watchdog, ended)
    watchdog.forget(kept.pgid)

    await watchdog.close()

    ended.assert_gone()
    assert is_running(kept.leader)
    assert is_running(kept.grandchild)
    assert kept.process.poll() is None  # the fixture ends it


async def test_the_watchdog_outlives_sigint_and_sighup(watchdog: Watchdog, workers: Workers) -> None:
    group = workers.spawn(on_term="exit")
    watch(watchdog, group)

    os.kill(watchdog.pid, signal.SIGINT)
    os.kill(watchdog.pid, signal.SIGHUP)
    os.kill(watchdog.pid, signal.SIGPIPE)
    await watchdog.close()

    # Had any of those signals ended it, nobody would have ended the group.
    group.assert_gone()


async def test_sigterm_makes_the_watchdog_end_its_groups_and_exit(watchdog: Watchdog, workers: Workers) -> None:
    group = workers.spawn(on_term="exit")
    watch(watchdog, group)

    os.kill(watchdog.pid, signal.SIGTERM)

    await eventually(
        lambda: not is_running(group.grandchild) and not is_running(watchdog.pid), "the group and the watchdog are gone"
    )
    group.assert_gone()


async def test_a_dead_watchdog_is_logged_once_and_never_raises(
    watchdog: Watchdog, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    group = workers.spawn(on_term="exit")
    os.kill(watchdog.pid, signal.SIGKILL)
    await eventually(lambda: any(r.levelno == logging.ERROR for r in caplog.records), "the server side notices")

    watch(watchdog, group)
    watchdog.forget(group.pgid)
    watch(watchdog, group)

    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "exited" in errors[0]
    assert is_running(group.leader)  # nobody ended it: the fixture does


async def test_start_reports_a_watchdog_that_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        await Watchdog.start(grace_s=0.3, python=str(tmp_path / "no-such-python"))
    # An interpreter that runs but never reports ready.
    with pytest.raises(Unavailable):
        await Watchdog.start(grace_s=0.3, python="/bin/false")


def test_the_line_protocol_ignores_bad_and_cut_short_lines(workers: Workers) -> None:
    watched = workers.spawn(on_term="exit")
    cut_short = workers.spawn(on_term="exit")
    process = subprocess.Popen(
        [sys.executable, "-m", "server.agents.watchdog", "--grace-s", "0.3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert read_line(process.stdout) == b"ready\n"
        lines = [
            b"hello\n",
            b"watch 0 0\n",
            b"watch 1 5\n",
            f"watch {process.pid} 1\n".encode(),  # the watchdog's own group
            b"watch x y\n",
            b"forget\n",
            f"watch {watched.pgid} {watched.identity.start_time}\n".encode(),
            # No newline: the server died mid-write, so the line may be truncated and is not acted on.
            f"watch {cut_short.pgid} {cut_short.identity.start_time}".encode(),
        ]
        _, stderr = process.communicate(b"".join(lines), timeout=DEADLINE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=DEADLINE_S)

    assert process.returncode == 0
    assert stderr.count(b"ignored a malformed line") == 6
    watched.assert_gone()
    assert is_running(cut_short.leader)
    assert is_running(cut_short.grandchild)
