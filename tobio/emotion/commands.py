"""`emotion show|history|set`: look at and poke an agent's affect."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result
from tobio.db.tables import StateRow
from tobio.errors import CommandError

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.emotion.affect import Mood
    from tobio.emotion.module import EmotionModule

BARS = "▁▂▃▄▅▆▇█"
NAME = Arg("agent", help="agent name", complete="agent")


def sparkline(values: list[float]) -> str:
    """Values in [-1, 1] as a row of block characters."""
    return "".join(BARS[min(len(BARS) - 1, int((v + 1) / 2 * len(BARS)))] for v in values)


def history_row(mood: Mood) -> dict[str, Any]:
    """One recorded change: the mood and the strongest emotion then, with its cause."""
    felt = mood.strongest
    return {"at": mood.at.isoformat(), **mood.affect.as_dict(), "label": mood.affect.label,
            "emotion": felt.name if felt else None, "intensity": round(felt.intensity, 3) if felt else None,
            "cause": felt.cause if felt else None}


# Each command imports the affect file when run: registering them at every start does not (module.py says why).
def register(root: Group, module: EmotionModule) -> None:
    group = root.group("emotion", "Agents' affect: pleasure, arousal, dominance.", owner=module)

    @group.command("show", NAME, Arg("--at", help="at this time (ISO, `now`, or --at=-5m), decayed from the last appraisal"),
                   agents="agents")
    def show(ctx: Context, agent: str, at: str | None) -> Result:
        """Show an agent's current mood (or at a time), its baseline and named emotion."""
        from tobio.emotion.affect import DIMENSIONS
        from tobio.replay import parse_time  # here: a start needs no replay code

        target = ctx.kernel.agents.get(agent)
        mood = module.mood(target, parse_time(at) if at else None)
        rows = [(k, round(getattr(mood.affect, k), 3), round(getattr(mood.baseline, k), 3)) for k in DIMENSIONS]
        half_life = module.half_lives(target)[0]
        felt = "".join(f"\n  {e.intensity:.2f} {e.phrase()}" for e in mood.emotions)
        note = (f"{mood.affect.label}; half-life {half_life:g} s; at {mood.at:%Y-%m-%d %H:%M:%S}"
                + (f"\nemotions:{felt}" if felt else ""))
        emotions = [{"name": e.name, "intensity": round(e.intensity, 3), "cause": e.cause, "source": e.source,
                     "at": e.at.isoformat()} for e in mood.emotions]
        return Result(columns=["dimension", "now", "baseline"], rows=rows, note=note,
                      data={"affect": mood.affect.as_dict(), "baseline": mood.baseline.as_dict(), "label": mood.affect.label,
                            "half_life_s": half_life, "emotions": emotions})

    async def recorded(ctx: Context, target: Agent) -> list[Mood]:
        """Every recorded mood of the agent (from the state table), oldest first, and its current one."""
        from tobio.emotion.affect import Mood

        await ctx.kernel.flush()

        def read(conn: sa.Connection) -> list[dict[str, Any]]:
            query = sa.select(StateRow.c.state_dict).where(StateRow.c.agent_id == target.id).order_by(StateRow.c.id)
            return [s for s in conn.execute(query).scalars()]

        states = await ctx.kernel.db.call(read) + [ctx.kernel.agents.full_state(target)]
        return [Mood.from_state(s["modules"]["emotion"]) for s in states if (s or {}).get("modules", {}).get("emotion")]

    @group.command("plot", NAME, Arg("--out", help="write the picture to this SVG file (its name ends in .svg)", complete="file"),
                   Arg("--last", short="-n", type=int, default=500, help="how many recorded changes"),
                   Arg("--until", help="draw the decay up to this time (ISO, `now`, or --until=-5m)"), agents="agents")
    async def plot(ctx: Context, agent: str, out: str | None, last: int, until: str | None) -> Result:
        """Draw an agent's mood and emotions over time: a figure in a notebook, an SVG file with --out."""
        from tobio.confined import write_confined
        from tobio.emotion.plot import Figure, svg, trace

        if out and Path(out).suffix.lower() != ".svg":
            raise CommandError(f"--out {out}: the picture is an SVG; give a file name ending in .svg")
        target = ctx.kernel.agents.get(agent)
        moods = (await recorded(ctx, target))[-max(1, last):]
        half_life, emotion_half_life = module.half_lives(target)
        from tobio.replay import parse_time

        drawn = trace(moods, half_life, emotion_half_life, parse_time(until) if until else None)
        picture = svg(drawn, f"{agent}: mood (pleasure, arousal, dominance) and emotions")
        where = ""
        if out:  # the person redraws over an old picture; an agent writes a new file inside the data dir
            written = write_confined(ctx.kernel, ctx.caller, Path(out).expanduser(), picture.encode("utf-8"),
                                     force=ctx.privileged)
            where = f"; written to {written}"
        text = f"{agent}: {len(moods)} recorded changes, {len(drawn.emotions)} emotions{where}"
        data = [{"at": t.isoformat(), **a.as_dict()} for t, a in zip(drawn.times, drawn.affects)]
        return Figure(text=text, data={"trace": data, "emotions": [{"name": e.name, "intensity": round(e.intensity, 3),
                                                                    "cause": e.cause, "at": e.at.isoformat()} for e in drawn.emotions]},
                      svg=picture)

    @group.command("history", NAME, Arg("--last", short="-n", type=int, default=60, help="how many changes"), agents="agents")
    async def history(ctx: Context, agent: str, last: int) -> Result:
        """Chart how an agent's mood changed (from the state table)."""
        from tobio.emotion.affect import DIMENSIONS

        target = ctx.kernel.agents.get(agent)
        moods = (await recorded(ctx, target))[-last:]
        if not moods:
            return Result(text=f"{agent} has no recorded mood yet")
        lines = [f"{k:<9} {sparkline([getattr(m.affect, k) for m in moods])}  now {getattr(moods[-1].affect, k):+.2f}" for k in DIMENSIONS]
        lines.append(f"{len(moods)} changes from {moods[0].at:%Y-%m-%d %H:%M:%S} to {moods[-1].at:%Y-%m-%d %H:%M:%S}; ▁ is -1, █ is +1")
        felt = [(m.at, m.strongest) for m in moods if m.strongest is not None]
        seen: set[tuple[str, str]] = set()
        for at, emotion in felt[-5:]:  # the latest distinct emotions, each with its cause
            if emotion is not None and (emotion.name, emotion.cause) not in seen:
                seen.add((emotion.name, emotion.cause))
                lines.append(f"{at:%H:%M:%S} {emotion.name} {emotion.intensity:.2f}: {emotion.cause}")
        return Result(text="\n".join(lines), data=[history_row(m) for m in moods])

    @group.command(
        "set", NAME,
        Arg("--pleasure", type=float, help="-1 … 1"), Arg("--arousal", type=float, help="-1 … 1"),
        Arg("--dominance", type=float, help="-1 … 1"), Arg("--baseline", flag=True, help="set the baseline instead"),
        agents="agents",  # its own mood only (NAME reaches the caller alone)
    )
    async def set_(ctx: Context, agent: str, pleasure: float | None, arousal: float | None, dominance: float | None, baseline: bool) -> Result:
        """Set an agent's mood (or baseline) for an experiment; recorded like any change."""
        from tobio.emotion.affect import DIMENSIONS, Affect, Mood

        target = ctx.kernel.agents.get(agent)
        values = {"pleasure": pleasure, "arousal": arousal, "dominance": dominance}
        if all(v is None for v in values.values()):
            raise CommandError("give at least one of --pleasure, --arousal, --dominance")
        for name, value in values.items():
            if value is not None and not -1 <= value <= 1:
                raise CommandError(f"--{name} must be between -1 and 1 (got {value})")
        mood = module.mood(target)
        which = mood.baseline if baseline else mood.affect
        changed = Affect(**{k: getattr(which, k) if (v := values[k]) is None else v for k in DIMENSIONS})
        mood = Mood(mood.affect, changed, mood.at, mood.emotions) if baseline else Mood(changed, mood.baseline, mood.at, mood.emotions)
        module.set_mood(target, mood)
        await ctx.kernel.agents.save_state(target)
        return Result(text=f"{agent}: {'baseline' if baseline else 'mood'} now {changed.as_dict()} ({changed.label})")
