"""`persona ls|show|set|diff|history|import|export`: curate who the agents are, every change versioned."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tobio.commands import Arg, Context, Result, table
from tobio.confined import MAX_IMPORT_BYTES, WriteBudget, write_confined
from tobio.errors import CommandError
from tobio.paths import slug
from tobio.persona.registry import field_diff

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.persona.registry import PersonaRegistry

KEY = Arg("persona", help="persona key (file name without .yaml)", complete="persona")


def register(kernel: Kernel, registry: PersonaRegistry) -> None:
    group = kernel.commands.group("persona", "Personas: who the agents are, curated and versioned.")

    @group.command("ls", agents="agents")
    async def ls(ctx: Context) -> Result:
        """List personas with their current version and the agents using them."""
        users: dict[str, list[str]] = {}
        for agent in ctx.kernel.agents.live.values():
            key = getattr(agent, "persona_key", None)
            if key and ctx.sees_agent(agent.name):
                users.setdefault(key, []).append(agent.name)
        rows = [(key, version, p.name, ", ".join(users.get(key, [])), p.description[:60])
                for key, (version, p) in sorted(registry.current.items()) if await _sees(ctx, key)]
        return table(["persona", "version", "name", "agents", "description"], rows)

    @group.command("show", KEY, Arg("--version", type=int, help="an earlier version"), agents="agents")
    async def show(ctx: Context, persona: str, version: int | None) -> Result:
        """Show a persona's fields (the current version, or --version N)."""
        data = await _version_data(registry, persona, version)
        rows = [(k, v) for k, v in data.items() if v not in (None, "", [], {})]
        return table(["field", "value"], rows, data=data)

    # An agent changes only a persona nobody else thinks with (reach "persona_write").
    @group.command("set", Arg("persona", help="persona key", complete="persona", reach="persona_write"),
                   Arg("field", help="e.g. speaking_style, personality, goals"),
                   Arg("value", nargs="+", help="text, or JSON for lists: '[\"warm\", \"shy\"]'"), agents="agents")
    async def set_(ctx: Context, persona: str, field: str, value: list[str]) -> Result:
        """Change one field; agents using the persona pick it up on their next turn."""
        version, _ = await registry.set_field(persona, field, " ".join(value), ctx.caller.label)
        return Result(text=f"{persona}: {field} changed (version {version}, by {ctx.caller.label})")

    @group.command("diff", KEY, Arg("versions", type=int, nargs="*", help="V1 [V2] (default: previous and current)"),
                   agents="agents")
    async def diff(ctx: Context, persona: str, versions: list[int]) -> Result:
        """What changed between two versions."""
        history = await registry.versions(persona)
        if not history:
            raise CommandError(f"no persona '{persona}' (see `persona ls`)")
        newest = history[-1].version
        v2 = versions[1] if len(versions) > 1 else newest
        v1 = versions[0] if versions else max(1, v2 - 1)
        old, new = await _version_data(registry, persona, v1), await _version_data(registry, persona, v2)
        rows = field_diff(old, new)
        return table(["field", f"v{v1}", f"v{v2}"], rows, note=None if rows else "no difference")

    @group.command("history", KEY, agents="agents")
    async def history(ctx: Context, persona: str) -> Result:
        """Every version: who changed what, when."""
        rows = [(v.version, v.created_at, v.changed_by, v.change) for v in await registry.versions(persona)]
        return table(["version", "at", "by", "change"], rows)

    @group.command("import", Arg("file", help="a Character Card (.json/.png/.charx, V1-V3) or a persona .yaml",
                                 complete="file"),
                   Arg("--name", help="persona key (default: from the file); made a safe slug"),
                   Arg("--dir", help="where to write the persona file (default: the config's personas/)", complete="file"),
                   Arg("--force", flag=True, help="overwrite an existing persona file"), agents="agents")
    async def import_(ctx: Context, file: str, name: str | None, dir: str | None, force: bool) -> Result:
        """Import a card or persona file: writes personas/KEY.yaml and records a version.

        The file is data: `${VAR}` stays as written and tags like `!include` are refused.
        """
        from tobio.persona.cards import import_card, persona_to_yaml
        from tobio.persona.schema import load_persona

        personas = _personas_dir(ctx)
        _no_force_for_agents(ctx, force)
        path = _path(file, "file")
        target_dir = _path(dir, "--dir") if dir else personas
        assets: dict[str, bytes] = {}
        suffix = path.suffix.lower()
        # Parsed off the kernel's loop: a card or archive is untrusted and may be large.
        if suffix in (".yaml", ".yml"):
            persona = await asyncio.to_thread(load_persona, path)
        elif suffix == ".charx":
            from tobio.persona.charx import import_charx

            persona, assets = await asyncio.to_thread(import_charx, path)
        else:
            persona = await asyncio.to_thread(import_card, path)
        key = slug(name or (path.stem if suffix in (".yaml", ".yml") else persona.name))
        if not ctx.caller.privileged and key in registry.current:  # a new version would change who others are
            raise CommandError(f"agent '{ctx.caller.name}' may not change the existing persona '{key}'; give a new --name")
        target = target_dir / f"{key}.yaml"
        blob = persona_to_yaml(persona).encode("utf-8")
        budget = WriteBudget(MAX_IMPORT_BYTES, f"importing {path.name}")
        budget.spend(sum(len(b) for b in assets.values()))  # checked before anything is written
        existed = target.exists()
        write_confined(ctx.kernel, ctx.caller, target, blob, force=force, inside=(personas,) if not dir else (), budget=budget)
        try:
            if assets:  # a CHARX's pictures and other members, kept so an export gives them back
                from tobio.persona.charx import save_assets

                await asyncio.to_thread(save_assets, key, assets)
            version = await registry.record(key, persona, ctx.caller.label, f"imported from {path.name}", str(target))
        except BaseException:  # nothing half-imported: no orphan persona file or assets without a version
            if assets:
                from tobio.persona.charx import remove_assets

                remove_assets(key)
            if not existed:
                target.unlink(missing_ok=True)
            raise
        return Result(text=f"imported {persona.name} as persona '{key}' (version {version}) into {target}")

    @group.command("export", KEY, Arg("file", help=".json / .png / .charx (Character Card) or .yaml", complete="file"),
                   Arg("--card-version", type=int, default=2, choices=(2, 3), help="card spec version"),
                   Arg("--image", help="PNG to carry the card (default: a plain placeholder)", complete="file"),
                   Arg("--force", flag=True, help="overwrite an existing file"), agents="agents")
    async def export(ctx: Context, persona: str, file: str, card_version: int, image: str | None, force: bool) -> Result:
        """Export the current version as a Character Card (JSON/PNG) or a persona file."""
        from tobio.persona.cards import card_bytes, persona_to_yaml

        version, current = registry.get(persona)
        _no_force_for_agents(ctx, force)
        path = _path(file, "file")
        picture = _path(image, "--image") if image else None
        if path.suffix.lower() in (".yaml", ".yml"):
            blob = persona_to_yaml(current).encode("utf-8")
        elif path.suffix.lower() == ".charx":
            from tobio.persona.charx import charx_bytes, load_assets

            blob = await asyncio.to_thread(lambda: charx_bytes(current, load_assets(persona)))
        else:
            blob = card_bytes(current, path, version=card_version, image=picture)
        target = write_confined(ctx.kernel, ctx.caller, path, blob, force=force)
        return Result(text=f"exported {persona} (version {version}) to {target}")


def _personas_dir(ctx: Context) -> Path:
    return Path(ctx.kernel.config.base_dir) / "personas"


def _no_force_for_agents(ctx: Context, force: bool) -> None:
    """An agent never overwrites a file: another persona's file, or one the person keeps."""
    if force and not ctx.caller.privileged:
        raise CommandError(f"agent '{ctx.caller.name}' may not overwrite files (--force is for a person)")


async def _sees(ctx: Context, key: str) -> bool:
    """Whether persona `key` is in the caller's view (its own, or one it imported; a person: all)."""
    from tobio.commands.view import can_reach

    return await can_reach(ctx, "persona", key)


def _path(given: str, what: str) -> Path:
    """A path argument as a Path. An agent's was already confined to the data directory, symlinks
    followed, before the command ran (every `complete="file"` argument is: commands/tree.py)."""
    if "\0" in given:
        raise CommandError(f"{what}: not a valid path")
    return Path(given).expanduser()


async def _version_data(registry: PersonaRegistry, key: str, version: int | None) -> dict[str, Any]:
    if version is None:
        from tobio.persona.registry import _dump

        return _dump(registry.get(key)[1])
    for row in await registry.versions(key):
        if row.version == version:
            return dict(row.data)
    raise CommandError(f"persona '{key}' has no version {version} (see `persona history {key}`)")

