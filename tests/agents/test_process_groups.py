"""process_groups against real processes: identities, group signalling, and ending groups with grandchildren."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.agents.process_groups import (
    ProcessIdentity,
    boot_id,
    end_group,
    group_exists,
    group_is_running,
    identify,
    is_same_process,
    kill_leftover,
    running_members,
    signal_group,
    tagged_processes,
)
from server.errors import InvalidArgument
from tests.agents.groups import DEADLINE_S, Workers, is_running, read_line, start_time, stat_fields, wait_until

# A command name with spaces and parentheses, as any process can give itself (prctl PR_SET_NAME).
TRICKY_NAME = "a) b (c) d"
RENAMED_SLEEPER = f"""
import ctypes, time
ctypes.CDLL(None).prctl(15, {TRICKY_NAME.encode()!r}, 0, 0, 0)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session and group that sleeps (renamed to TRICKY_NAME) until killed."""
    process = subprocess.Popen([sys.executable, "-c", RENAMED_SLEEPER], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert process.stdout is not None
        assert read_line(process.stdout) == b"ready\n"
        yield process
    finally:
        process.kill()
        process.wait(timeout=DEADLINE_S)
        if process.stdout is not None:
            process.stdout.close()


def test_identify_a_live_child_even_with_parentheses_in_its_name(sleeper: subprocess.Popen[bytes]) -> None:
    assert Path(f"/proc/{sleeper.pid}/comm").read_text().strip() == TRICKY_NAME

    identity = identify(sleeper.pid)

    assert identity == ProcessIdentity(sleeper.pid, start_time(sleeper.pid))
    assert is_same_process(identity)
    # The group field is parsed past the name too: the child leads its own running group.
    assert group_is_running(sleeper.pid)
    assert running_members(sleeper.pid) == [sleeper.pid]


def test_a_dead_child_has_no_identity(sleeper: subprocess.Popen[bytes]) -> None:
    identity = identify(sleeper.pid)
    assert identity is not None

    sleeper.kill()
    wait_until(lambda: (stat_fields(sleeper.pid) or ["gone"])[0] == "Z", "the child is a zombie")
    # Exited but not yet reaped: a zombie runs nothing, so it is no longer "the same process".
    assert identify(sleeper.pid) is None
    assert not is_same_process(identity)

    sleeper.wait(timeout=DEADLINE_S)
    assert identify(sleeper.pid) is None
    assert not is_same_process(identity)
    assert not group_exists(sleeper.pid)


def test_kill_leftover_never_signals_a_pid_with_another_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    real = identify(sleeper.pid)
    assert real is not None
    reused = ProcessIdentity(real.pid, real.start_time + 1)

    assert not is_same_process(reused)
    assert kill_leftover(reused) is False
    assert sleeper.poll() is None
    assert is_same_process(real)

    assert kill_leftover(real) is True
    assert sleeper.wait(timeout=DEADLINE_S) == -signal.SIGKILL


def test_kill_leftover_kills_the_whole_group(workers: Workers) -> None:
    group = workers.spawn(on_term="ignore")

    assert kill_leftover(group.identity) is True

    wait_until(lambda: not is_running(group.grandchild), "the grandchild is gone")
    assert group.process.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    group.assert_gone()


def test_kill_leftover_kills_what_remains_of_a_group_whose_leader_exited(workers: Workers) -> None:
    group = workers.spawn(on_term="exit")
    identity = group.identity
    os.kill(group.leader, signal.SIGTERM)
    wait_until(lambda: not is_running(group.leader), "the leader has exited")
    assert is_running(group.grandchild)

    # The unreaped leader still pins its pid, so the group is still the one it led.
    assert kill_leftover(identity) is True

    wait_until(lambda: not is_running(group.grandchild), "the grandchild is gone")
    group.assert_gone()


async def test_end_group_ends_a_group_whose_leader_is_already_reaped(workers: Workers) -> None:
    group = workers.spawn(on_term="exit")
    os.kill(group.leader, signal.SIGTERM)
    assert group.process.wait(timeout=DEADLINE_S) == 0
    assert is_running(group.grandchild)

    assert await end_group(group.pgid, grace_s=DEADLINE_S) == "terminated"

    group.assert_gone()


async def test_end_group_terminates_a_group_with_a_grandchild(workers: Workers) -> None:
    group = workers.spawn(on_term="exit")

    # The leader stays a zombie (this test has not reaped it): end_group must not wait for that.
    assert await end_group(group.pgid, grace_s=DEADLINE_S) == "terminated"

    group.assert_gone()
    assert group.process.wait(timeout=DEADLINE_S) == 0
    assert stat_fields(group.leader) is None


async def test_end_group_kills_a_group_that_ignores_sigterm(workers: Workers) -> None:
    group = workers.spawn(on_term="ignore")

    assert await end_group(group.pgid, grace_s=0.2) == "killed"

    group.assert_gone()
    assert group.process.wait(timeout=DEADLINE_S) == -signal.SIGKILL


async def test_end_group_ends_a_stopped_group(workers: Workers) -> None:
    group = workers.spawn(on_term="exit")
    os.killpg(group.pgid, signal.SIGSTOP)
    wait_until(
        lambda: all((stat_fields(pid) or ["gone"])[0] == "T" for pid in (group.leader, group.grandchild)), "the group is stopped"
    )

    # Its SIGTERM handler can only run once the group is continued: "terminated" means SIGCONT was sent.
    assert await end_group(group.pgid, grace_s=DEADLINE_S) == "terminated"

    group.assert_gone()


async def test_end_group_of_an_ended_group_is_gone(workers: Workers) -> None:
    group = workers.spawn(on_term="exit")
    assert await end_group(group.pgid, grace_s=DEADLINE_S) == "terminated"

    assert await end_group(group.pgid, grace_s=DEADLINE_S) == "gone"
    group.process.wait(timeout=DEADLINE_S)
    assert await end_group(group.pgid, grace_s=DEADLINE_S) == "gone"


def test_signalling_a_vanished_group_reports_it_without_raising(sleeper: subprocess.Popen[bytes]) -> None:
    assert group_exists(sleeper.pid)
    assert signal_group(sleeper.pid, 0)

    sleeper.kill()
    sleeper.wait(timeout=DEADLINE_S)

    assert not group_exists(sleeper.pid)
    assert not group_is_running(sleeper.pid)
    assert signal_group(sleeper.pid, signal.SIGTERM) is False


@pytest.mark.parametrize("pgid", [0, 1, -5, os.getpgrp()])
def test_refuses_groups_that_are_not_an_agents(pgid: int) -> None:
    with pytest.raises(InvalidArgument):
        signal_group(pgid, 0)
    with pytest.raises(InvalidArgument):
        group_exists(pgid)


def test_boot_id_is_the_kernels() -> None:
    # Asked of another program (procps' sysctl by the sysctl's name, or cat where procps is missing),
    # so a wrong file, a per-read value such as kernel.random.uuid or a kept newline all fail here.
    ask = (["sysctl", "-n", "kernel.random.boot_id"] if shutil.which("sysctl")
           else ["cat", "/proc/sys/kernel/random/boot_id"])
    kernels = subprocess.run(ask, capture_output=True, text=True, check=True, timeout=DEADLINE_S).stdout.strip()
    assert boot_id() == kernels
    assert boot_id() == boot_id()
    assert str(uuid.UUID(kernels)) == kernels


# A leader that starts a child in a session of its own (as Claude Code does for Bash), then waits.
_LEAVES_ITS_GROUP = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.02)"], start_new_session=True)
print(child.pid, flush=True)
while True:
    time.sleep(0.02)
"""


async def test_end_group_with_a_tag_also_ends_tools_that_left_the_group(tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_AGENT_ID": "agent-tagtest"}
    leader = subprocess.Popen([sys.executable, "-c", _LEAVES_ITS_GROUP], stdout=subprocess.PIPE, env=env,
                              start_new_session=True)
    assert leader.stdout is not None
    stray = int(read_line(leader.stdout))
    try:
        assert sorted(tagged_processes(["agent-tagtest"])) == sorted([leader.pid, stray])
        assert await end_group(leader.pid, 1.0) == "terminated"
        leader.wait()
        assert is_running(stray), "without the tag, a tool in its own session survives its agent's group"
        stray_leader = subprocess.Popen([sys.executable, "-c", _LEAVES_ITS_GROUP], stdout=subprocess.PIPE,
                                        env=env, start_new_session=True)
        assert stray_leader.stdout is not None
        second_stray = int(read_line(stray_leader.stdout))
        assert await end_group(stray_leader.pid, 1.0, tag="agent-tagtest") == "terminated"
        stray_leader.wait()
        assert not is_running(stray) and not is_running(second_stray)
        assert tagged_processes(["agent-tagtest"]) == []
    finally:
        for pid in (leader.pid, stray):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in tagged_processes(["agent-tagtest"]):
            os.kill(pid, signal.SIGKILL)
