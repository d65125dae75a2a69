"""`model ls|show|test`, `provider ls|test`, `run ls|show|cancel`."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result, table
from tobio.db.tables import AgentRow, Row, RunRow, StepRow
from tobio.errors import CommandError, ProviderSetupError
from tobio.models.module import models_of, runs_of
from tobio.secrets import redact

STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "expired")


def register(root: Group) -> None:
    _model_commands(root.group("model", "Model bundles: provider + model + purpose + parameters."))
    _provider_commands(root.group("provider", "Model back ends (local, openai, scripted, plugins)."))
    _run_commands(root.group("run", "Recorded model runs and their steps."))


def _model_commands(group: Group) -> None:
    @group.command("ls", agents="agents")
    def ls(ctx: Context) -> Result:
        """List model bundles."""
        rows = [(m.name, m.spec.purpose, m.spec.provider, m.provider_model, redact(m.spec.params) or "") for m in models_of(ctx.kernel).models.values()]
        return table(["model", "purpose", "provider", "provider model", "params"], rows)

    @group.command("show", Arg("name", help="model bundle", complete="model"), agents="agents")
    async def show(ctx: Context, name: str) -> Result:
        """Show a bundle and what it has cost so far (runs, tokens, latency)."""
        model = models_of(ctx.kernel).get(name)
        await ctx.kernel.flush()

        def usage(conn: sa.Connection) -> tuple[Any, ...]:
            return tuple(conn.execute(
                sa.select(sa.func.count(), sa.func.sum(RunRow.c.prompt_tokens), sa.func.sum(RunRow.c.completion_tokens),
                          sa.func.avg(RunRow.c.latency_ms), sa.func.avg(RunRow.c.ttft_ms)).where(RunRow.c.model == name)
            ).one())

        runs, prompt, completion, latency, ttft = await ctx.kernel.db.call(usage)
        fields = list(redact(model.describe()).items()) + [
            ("runs", runs), ("prompt tokens", prompt or 0), ("completion tokens", completion or 0),
            ("mean latency ms", round(latency or 0, 1)), ("mean ttft ms", round(ttft or 0, 1)),
        ]
        return table(["field", "value"], fields)

    @group.command(
        "test",
        Arg("name", help="model bundle", complete="model"),
        Arg("prompt", nargs="+", help="what to send"),
        Arg("--system", help="a system message"),
        agents="people",  # spends the model's time on nobody's turn
    )
    async def test(ctx: Context, name: str, prompt: list[str], system: str | None) -> Result:
        """Send one prompt to a bundle and stream the reply (embed bundles: show the vector)."""
        model = models_of(ctx.kernel).get(name)
        text = " ".join(prompt)
        began = time.perf_counter()
        if model.spec.purpose == "embed":
            vector = (await model.embed([text]))[0]
            ms = (time.perf_counter() - began) * 1000
            return Result(text=f"{len(vector)} dimensions in {ms:.0f} ms: [{', '.join(f'{v:.3f}' for v in vector[:6])}, …]")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        run = model.run(messages)
        async for delta in run.deltas():
            ctx.emit(delta)
        rate = (run.completion_tokens or 0) / max(1e-9, (run.latency_ms or 0) / 1000)
        stats = f"run {run.id}: {run.completion_tokens} tokens, ttft {run.ttft_ms or 0:.0f} ms, {rate:.1f} tokens/s"
        return Result(text=f"{run.text}\n[{stats}]" if ctx.emit_fn is None else f"\n[{stats}]", data={"text": run.text, "run": run.id})


def _provider_commands(group: Group) -> None:
    @group.command("ls", agents="agents")
    def ls(ctx: Context) -> Result:
        """List configured providers (secrets never shown)."""
        rows = []
        providers = models_of(ctx.kernel).providers
        for name in providers:
            try:  # built on first use: a type whose module is not loaded (yet) is shown, not fatal
                info = redact(providers[name].describe())
            except ProviderSetupError:
                rows.append((name, providers.type_of(name), "", "type not registered (`mod load` the module that adds it)"))
                continue
            details = ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("type", "description"))
            rows.append((name, info.get("type"), details, info.get("description", "")))
        return table(["provider", "type", "settings", "description"], rows)

    @group.command("test", Arg("name", help="provider", complete="provider"), agents="people")
    async def test(ctx: Context, name: str) -> Result:
        """Check a provider answers: list its models and time a tiny chat on its first chat bundle."""
        provider = models_of(ctx.kernel).providers.get(name)
        if provider is None:
            raise CommandError(f"no provider named '{name}' (see `provider ls`)")
        began = time.perf_counter()
        models = await provider.list_models()
        lines = [f"models: {', '.join(models) or '(none listed)'} ({(time.perf_counter() - began) * 1000:.0f} ms)"]
        bundle = next((m for m in models_of(ctx.kernel).models.values() if m.spec.provider == name and m.spec.purpose != "embed"), None)
        if bundle is not None:
            run = bundle.run([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}], params={"max_tokens": 12})
            await run.wait()
            lines.append(f"chat via {bundle.name}: {run.text.strip()!r} (ttft {run.ttft_ms or 0:.0f} ms, total {run.latency_ms or 0:.0f} ms)")
        return Result(text="\n".join(lines))


def _run_commands(group: Group) -> None:
    @group.command(
        "ls",
        Arg("--status", choices=STATUSES, help="only runs with this status"),
        Arg("--agent", help="only this agent's runs", complete="agent"),
        Arg("--last", short="-n", type=int, default=20, help="how many"),
        agents="agents",  # --agent: the calling agent itself
    )
    async def ls(ctx: Context, status: str | None, agent: str | None, last: int) -> Result:
        """List recent runs: model, status, tokens, latency."""
        await ctx.kernel.flush()
        live = set(runs_of(ctx.kernel).live)

        def read(conn: sa.Connection) -> list[tuple[Any, ...]]:
            query = (
                sa.select(RunRow.c.id, AgentRow.c.name, RunRow.c.model, RunRow.c.status, RunRow.c.prompt_tokens, RunRow.c.cached_tokens,
                          RunRow.c.completion_tokens, RunRow.c.ttft_ms, RunRow.c.latency_ms, RunRow.c.created_at, RunRow.c.error,
                          RunRow.c.purpose)
                .outerjoin(AgentRow, AgentRow.c.id == RunRow.c.agent_id)
                .order_by(RunRow.c.id.desc()).limit(last)
            )
            if status:
                query = query.where(RunRow.c.status == status)
            if agent:
                query = query.where(AgentRow.c.name == agent)
            return [tuple(r) for r in conn.execute(query)][::-1]

        rows = [
            (r[0], r[1] or "-", r[2], r[11], r[3] + (" (dangling)" if r[3] in ("queued", "in_progress") and r[0] not in live else ""),
             r[4], r[5], r[6], round(r[7]) if r[7] is not None else None, round(r[8]) if r[8] is not None else None,
             r[9], r[10] or "")
            for r in await ctx.kernel.db.call(read)
        ]
        # `for`: the model's purpose, or "prefill" for a prompt read ahead after a reply (nothing generated)
        return table(["run", "agent", "model", "for", "status", "prompt", "cached", "completion", "ttft ms", "ms", "created",
                      "error"], rows)

    @group.command("show", Arg("id", type=int, help="run id", complete="run"), agents="agents")
    async def show(ctx: Context, id: int) -> Result:
        """Show one run with its parameters and steps."""
        await ctx.kernel.flush()

        def read(conn: sa.Connection) -> tuple[Row | None, list[Row]]:
            run = conn.execute(sa.select(RunRow).where(RunRow.c.id == id)).first()
            return run, list(conn.execute(sa.select(StepRow).where(StepRow.c.run_id == id).order_by(StepRow.c.id)))

        run, steps = await ctx.kernel.db.call(read)
        if run is None:
            raise CommandError(f"no run {id} (see `run ls`)")
        fields = [(c, getattr(run, c)) for c in ("id", "status", "model", "provider", "provider_model", "purpose", "params",
                  "thread_id", "message_id", "prompt_tokens", "cached_tokens", "completion_tokens", "ttft_ms", "latency_ms", "created_at", "error")]
        fields = [(c, redact(v)) for c, v in fields]  # rows written before redaction existed may hold secrets
        fields += [(f"step {s.id} {s.kind}", {"name": s.name, "params": redact(s.params), "result": s.result}) for s in steps]
        return table(["field", "value"], fields, title=f"run {id}")

    @group.command("cancel", Arg("id", type=int, nargs="?", help="run id", complete="run"),
                   Arg("--dangling", flag=True, help="cancel recorded runs nothing is executing (left by a crash)"),
                   agents="people")
    async def cancel(ctx: Context, id: int | None, dangling: bool) -> Result:
        """Cancel a live run, or mark dangling runs cancelled."""
        if dangling:
            ids = await runs_of(ctx.kernel).cancel_dangling()
            return Result(text=f"cancelled {len(ids)} dangling run(s){': ' + ', '.join(map(str, ids)) if ids else ''}")
        if id is None:
            raise CommandError("give a run id or --dangling", usage="usage: run cancel [--dangling] [id]")
        if not await runs_of(ctx.kernel).cancel(id):
            raise CommandError(f"run {id} is not running (see `run ls`)")
        return Result(text=f"cancelling run {id}")
