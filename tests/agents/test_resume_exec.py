"""Resuming agents that ended, on exec agents (real processes): what a resume spec may say, and an
exec agent started again in the same place."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import Conflict, InvalidArgument, NotFound
from server.services import open_services
from tests.agents.swarm import agent_settings, request, spec


async def test_a_resumed_exec_agent_starts_its_type_again_in_the_same_directory(tmp_path: Path) -> None:
    async with open_services(agent_settings(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(spec("writer", "write note.txt kept"), wait=True))
        (writer,) = report.entries
        assert writer.status == "completed"
        await services.supervisor.terminate(writer.agent_id, 2.0)
        resumed = await services.spawner.spawn_many(request(
            spec("", "cat note.txt", type="", resume=writer.agent_id), wait=True))
        (entry,) = resumed.entries
        assert entry.status == "completed" and entry.result == "kept\n" and entry.name == "writer"
        record = await services.supervisor.records.agent(entry.agent_id)
        old = await services.supervisor.records.agent(writer.agent_id)
        assert record is not None and old is not None
        assert record.resumed_from == writer.agent_id and record.workdir == old.workdir and record.type == "worker"


async def test_resume_refusals_change_nothing(tmp_path: Path) -> None:
    async with open_services(agent_settings(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(spec("live"), spec("done", "ok done"), wait=True))
        live, done = report.entries
        await services.supervisor.terminate(done.agent_id, 2.0)
        before = await services.supervisor.records.counts_by_status()
        with pytest.raises(NotFound, match="no agent 'agent-nope'"):
            await services.spawner.spawn_many(request(spec("", type="", resume="agent-nope")))
        with pytest.raises(Conflict, match=f"agent {live.agent_id} is ready; only an agent that ended"):
            await services.spawner.spawn_many(request(spec("", type="", resume=live.agent_id)))
        with pytest.raises(InvalidArgument, match="appears twice"):
            await services.spawner.spawn_many(request(spec("x", type="", resume=done.agent_id),
                                                      spec("y", type="", resume=done.agent_id)))
        with pytest.raises(InvalidArgument, match="fork applies to resume"):
            await services.spawner.spawn_many(request(spec("f", fork=True)))
        with pytest.raises(InvalidArgument, match="leave out cwd, workspace and base_ref"):
            await services.spawner.spawn_many(request(spec("", type="", resume=done.agent_id, cwd=str(tmp_path))))
        with pytest.raises(InvalidArgument, match="of type 'worker', not 'coder'"):
            await services.spawner.spawn_many(request(spec("", type="coder", resume=done.agent_id)))
        assert await services.supervisor.records.counts_by_status() == before
