"""Runs and steps with the scripted provider: recording, retries, failures, cancellation, JSON repair."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from tobio.config.schema import KernelConfig
from tobio.errors import CommandError
from tobio.kernel import Kernel
from tobio.models.jsonfix import JSONRepairError, parse_json
from tobio.models.module import models_of
from tobio.providers.base import ProviderError

from conftest import write
from helpers import wait_until


def start(url: str, **scripted: Any) -> Kernel:
    providers = {"s": {"type": "scripted", **scripted}}
    models = {"m": {"provider": "s", "model": "scripted", "purpose": "chat"},
              "json-fix": {"provider": "s", "model": "scripted", "purpose": "json"}}
    return Kernel(KernelConfig(modules=["models", "persona", "scripted"], providers=providers, models=models), database=url).start()


@pytest.fixture
def url(duckdb_url: str) -> str:
    return duckdb_url


def run_row(kernel: Kernel, run_id: int) -> dict[str, Any]:
    kernel.call(kernel.writer.flush())
    return dict(kernel.run(f"run show {run_id}").rows)


def test_run_is_recorded_with_tokens_timing_and_step(url: str) -> None:
    kernel = start(url, replies=["hello {last}"], token_delay_s=0.01)
    try:
        model = models_of(kernel).get("m")
        run = kernel.call(model.run([{"role": "user", "content": "there"}], params={"temperature": 0.5}).wait())
        assert run.text == "hello there" and run.status == "completed"
        row = run_row(kernel, run.id)
        assert row["status"] == "completed" and row["model"] == "m" and row["provider"] == "s"
        assert row["params"] == {"temperature": 0.5}
        assert row["prompt_tokens"] == 1 and row["completion_tokens"] == 2
        assert row["ttft_ms"] > 0 and row["latency_ms"] >= row["ttft_ms"]
        step = next(v for k, v in row.items() if str(k).startswith("step"))
        assert step["result"]["text"] == "hello there"
    finally:
        kernel.close()


@pytest.mark.slow
def test_retryable_failures_are_retried_with_backoff(url: str) -> None:
    kernel = start(url, replies=["ok"], fail_first=2)
    try:
        run = kernel.call(models_of(kernel).get("m").run([{"role": "user", "content": "x"}]).wait())
        assert run.text == "ok" and models_of(kernel).providers["s"].calls == 3
        warnings = kernel.run("log tail --level WARNING").rows
        assert sum("retry" in r[-1] for r in warnings) == 2
    finally:
        kernel.close()


def test_non_retryable_failure_marks_run_failed_with_error(url: str) -> None:
    kernel = start(url, replies=["ok"], fail_first=1, fail_retryable=False)
    try:
        run = models_of(kernel).get("m").run([{"role": "user", "content": "x"}])
        with pytest.raises(ProviderError, match="failure on call 1"):
            kernel.call(run.wait())
        row = run_row(kernel, run.id)
        assert row["status"] == "failed" and "failure on call 1" in row["error"]
    finally:
        kernel.close()


def test_cancel_mid_stream(url: str) -> None:
    kernel = start(url, replies=[" ".join(f"w{i}" for i in range(200))], token_delay_s=0.01)
    try:
        run = models_of(kernel).get("m").run([{"role": "user", "content": "x"}])

        async def stream_then_cancel() -> int:
            n = 0
            async for _ in run.deltas():
                n += 1
                if n == 5:
                    await kernel.execute(f"run cancel {run.id}")
            return n

        seen = kernel.call(stream_then_cancel())
        assert 5 <= seen < 20
        assert run_row(kernel, run.id)["status"] == "cancelled"
    finally:
        kernel.close()


def test_dangling_runs_are_listed_and_cancelled(url: str) -> None:
    kernel = start(url)
    try:
        kernel.run("sql --write INSERT INTO runs (id, model, provider, provider_model, purpose, status, created_at) "
                   "VALUES (999, 'm', 's', 'x', 'chat', 'in_progress', now())")
        assert "(dangling)" in kernel.run("run ls").rows[-1][4]
        assert kernel.run("run cancel --dangling").text == "cancelled 1 dangling run(s): 999"
        assert run_row(kernel, 999)["status"] == "cancelled"
        with pytest.raises(CommandError, match="not running"):
            kernel.run("run cancel 999")
        kernel.run("sql --write UPDATE runs SET status = 'in_progress' WHERE id = 999")
    finally:
        kernel.close()
    kernel = start(url)  # a restart finds the run its predecessor left unfinished
    try:
        row = run_row(kernel, 999)
        assert row["status"] == "expired" and row["error"] == "the process running it stopped"
    finally:
        kernel.close()


class Feeling(BaseModel):
    mood: str
    intensity: float = Field(ge=0, le=1)


def test_json_repair_after_broken_output(url: str) -> None:
    broken = 'Sure! ```json\n{"mood": "happy", "intensity": 7}\n```'
    kernel = start(url, replies=[broken, '{"mood": "happy", "intensity": 0.7,}'])
    try:
        value = kernel.call(models_of(kernel).get("m").json("How do you feel?", Feeling))
        assert value == Feeling(mood="happy", intensity=0.7)
        assert models_of(kernel).providers["s"].calls == 2  # one answer, one repair
        infos = kernel.run("log tail --grep repair").rows
        assert any("intensity" in r[-1] for r in infos)
    finally:
        kernel.close()


def test_json_repair_gives_up_with_raw_text_kept(url: str) -> None:
    kernel = start(url, replies=["no json here"])
    try:
        with pytest.raises(JSONRepairError) as err:
            kernel.call(models_of(kernel).get("m").json("How do you feel?", Feeling, tries=2))
        assert err.value.raw == ["no json here"] * 3
        assert "after 2 repairs" in str(err.value)
    finally:
        kernel.close()


def test_lenient_json_parsing() -> None:
    assert parse_json('text before {"a": [1, 2,],} after') == {"a": [1, 2]}
    assert parse_json("```\n[1, 2]\n```") == [1, 2]
    with pytest.raises(ValueError):
        parse_json("nothing")


PERSONA = "name: Ada\ndescription: A careful engineer.\npersonality: [precise]\n"


def persona_agent(kernel: Kernel, tmp_path: Path, **extra: str) -> None:
    write(tmp_path / "ada.yaml", PERSONA)
    fields = "".join(f"{k}: {v}\n" for k, v in extra.items())
    agent = write(tmp_path / "agent.yaml", f"name: ada\ntype: persona\npersona: ada.yaml\nmodel: m\nchannels: [room]\n{fields}")
    kernel.run(f"agent spawn {agent}")


def test_persona_agent_streams_reply_and_links_run(url: str, tmp_path: Path) -> None:
    kernel = start(url, replies=["Hello from Ada about {last}"], token_delay_s=0.01)
    try:
        persona_agent(kernel, tmp_path)
        deltas: list[str] = []
        kernel.call(_listen(kernel, "room", deltas))
        kernel.run("channel post room gears")
        wait_until(lambda: kernel.agents.live["ada"].turns == 1)
        kernel.call(kernel.writer.flush())
        rows = kernel.run("sql SELECT r.status, m.content, m.agent_id IS NOT NULL FROM runs r JOIN messages m ON m.id = r.message_id").rows
        assert rows == [("completed", "Hello from Ada about gears", True)]
        assert "".join(deltas) == "Hello from Ada about gears"
        prompt = kernel.run("sql SELECT params FROM runs").rows  # parameters recorded, no secrets
        assert prompt
    finally:
        kernel.close()


async def _listen(kernel: Kernel, channel: str, into: list[str]) -> None:
    from tobio.messages import Delta

    kernel.transport.listen(channel, lambda item: into.append(item.text) if isinstance(item, Delta) else None)


def test_failing_provider_does_not_wedge_the_agent(url: str, tmp_path: Path) -> None:
    kernel = start(url, replies=["fine"], fail_first=1, fail_retryable=False)
    try:
        persona_agent(kernel, tmp_path)
        kernel.run("channel post room first")
        ada = kernel.agents.live["ada"]
        wait_until(lambda: ada.failures == 1)
        kernel.run("channel post room second")
        wait_until(lambda: ada.turns == 1)
        kernel.call(kernel.writer.flush())
        statuses = [r[0] for r in kernel.run("sql SELECT status FROM runs ORDER BY id").rows]
        assert statuses == ["failed", "completed"]
        # The failed run posted nothing: no half-written reply.
        assert kernel.run("sql SELECT count(*) FROM messages WHERE agent_id IS NOT NULL").rows == [(1,)]
    finally:
        kernel.close()


def test_mid_stream_failure_posts_nothing(url: str, tmp_path: Path) -> None:
    kernel = start(url, replies=["one two three four five"], fail_after_words=2, max_retries=0)
    try:
        persona_agent(kernel, tmp_path)
        kernel.run("channel post room hi")
        wait_until(lambda: kernel.agents.live["ada"].failures == 1)
        kernel.call(asyncio.sleep(0.05))
        kernel.call(kernel.writer.flush())
        assert kernel.run("sql SELECT status, error FROM runs").rows[0][0] == "failed"
        assert kernel.run("sql SELECT count(*) FROM messages WHERE agent_id IS NOT NULL").rows == [(0,)]
    finally:
        kernel.close()


def test_model_calls_from_background_jobs_are_marked_background(url: str) -> None:
    """A run started inside a kernel job (a summary, a reflection) says so on its request, however deep
    the call; one started by an agent or a command does not: the local provider serves replies first."""
    kernel = start(url, replies=["ok"])
    try:
        model = models_of(kernel).get("m")
        seen: dict[str, bool] = {}

        async def ask(label: str) -> None:
            run = model.run([{"role": "user", "content": label}])
            seen[label] = run.request.background
            await run.wait()

        async def nested() -> None:
            await asyncio.gather(ask("job"))  # a child task inherits the job's context

        async def go() -> None:
            await kernel.tasks.spawn(nested(), name="test:job", kind="job").task
            await kernel.tasks.spawn(ask("task"), name="test:task", kind="task").task
            await ask("direct")

        kernel.call(go())
        assert seen == {"job": True, "task": False, "direct": False}
    finally:
        kernel.close()
