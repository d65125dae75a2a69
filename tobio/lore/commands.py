"""`lore ls|show|import|export|history|attach|detach|test`: lorebooks, versioned, and what would fire."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tobio.commands import Arg, Context, Result, table
from tobio.commands.view import add_reach
from tobio.confined import write_confined
from tobio.errors import CommandError
from tobio.hooks import CHARACTERS
from tobio.lore.hook import card_book
from tobio.lore.store import read_world_file
from tobio.paths import slug

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.lore.module import LoreModule
    from tobio.lore.schema import Book, Entry
    from tobio.lore.store import LoreStore

BOOK = Arg("book", help="lorebook name (see `lore ls`); card:KEY is a persona's own book", reach="book")
POSITIONS = ("before", "after", "AN top", "AN bottom", "at depth", "EM top", "EM bottom")


async def in_view(ctx: Context, book: str) -> bool:
    """Whether `book` is in the caller's view: attached to it or to a channel it is on, its persona's own
    book, or one it imported itself (a person sees every book)."""
    if ctx.caller.privileged:
        return True
    from tobio.lore.module import LoreModule

    module = ctx.kernel.modules.get(LoreModule)
    agent = ctx.agent
    if module is None or module.store is None or agent is None:
        return False
    if book.startswith("card:"):
        return book == f"card:{getattr(agent, 'persona_key', None)}"
    for name, kind, target in module.store.attached:
        if name == book and ((kind == "agent" and target == agent.name) or (kind == "channel" and ctx.sees_channel(target))):
            return True
    versions = await module.store.versions(book) if book in module.store.current else []
    return bool(versions) and versions[0].changed_by == ctx.caller.label


async def _book_reach(ctx: Context, arg: Arg, value: Any) -> Any:
    if value is not None and not await in_view(ctx, str(value)):
        raise CommandError(f"{arg.dest}: agent '{ctx.caller.name}' has no lorebook '{str(value)[:40]}' in its view")
    return value


add_reach("book", _book_reach)


def _target(agent: str | None, channel: str | None) -> tuple[str, str]:
    if bool(agent) == bool(channel):
        raise CommandError("give exactly one of --agent NAME or --channel NAME")
    return ("agent", agent) if agent else ("channel", channel or "")


def _card_books(kernel: Kernel) -> dict[str, Book]:
    """`card:KEY` books of the personas the registry knows (agents' own lorebooks)."""
    out: dict[str, Book] = {}
    for key, persona in (pair for found in kernel.hooks.collect(CHARACTERS) for pair in found):
        book = card_book(type("P", (), {"persona": persona, "persona_key": key, "name": key})())
        if book is not None:
            out[book.name] = book
    return out


def _position(entry: Entry) -> str:
    from tobio.lore.schema import ROLES

    where = POSITIONS[entry.position] if 0 <= entry.position < len(POSITIONS) else str(entry.position)
    return f"{where} {entry.depth} as {ROLES[entry.role]}" if where == "at depth" else where


def entry_row(entry: Entry) -> tuple[Any, ...]:
    from tobio.lore.schema import LOGIC_NAMES

    keys = ", ".join(entry.keys) + (" [regex]" if entry.use_regex else "")
    secondary = f"{LOGIC_NAMES.get(entry.logic)}: {', '.join(entry.secondary)}" if entry.selective and entry.secondary else ""
    flags = [name for name, on in (("constant", entry.constant), ("disabled", not entry.enabled)) if on]
    flags += [f"{k} {getattr(entry, k)}" for k in ("sticky", "cooldown", "delay") if getattr(entry, k)]
    if entry.probability < 100 and entry.use_probability:
        flags.append(f"{entry.probability:g}%")
    decorators = " ".join(map(str, entry.decorators)) + ("" if not entry.unknown else " kept: " + " ".join(map(str, entry.unknown)))
    return (entry.uid, entry.label(), keys, secondary, entry.order, _position(entry), " ".join(flags), decorators.strip(),
            entry.content[:80])


def register(kernel: Kernel, module: LoreModule) -> None:
    group = kernel.commands.group("lore", "World Info: lorebooks that enter prompts when their keys come up.")

    def store() -> LoreStore:
        assert module.store is not None
        return module.store

    @group.command("ls", agents="agents")
    async def ls(ctx: Context) -> Result:
        """List lorebooks: imported ones with their version and attachments, and personas' own."""
        rows: list[tuple[Any, ...]] = []
        for key, (version, _) in sorted(store().current.items()):
            if not await in_view(ctx, key):
                continue
            where = ", ".join(f"{kind} {target}" for b, kind, target in store().attached if b == key)
            rows.append((key, version, len(store().book(key).entries), where))
        for key, found in sorted(_card_books(ctx.kernel).items()):
            if not await in_view(ctx, key):
                continue
            rows.append((key, "-", len(found.entries), "its persona's agents"))
        return table(["book", "version", "entries", "attached to"], rows)

    @group.command("show", BOOK, Arg("--version", type=int, help="an earlier version"), agents="agents")
    async def show(ctx: Context, book: str, version: int | None) -> Result:
        """Show a book's entries: keys, logic, order, position, timing, decorators."""
        name = book
        if version is not None:
            found = [r for r in await store().versions(name) if r.version == version]
            if not found:
                raise CommandError(f"lorebook '{name}' has no version {version}")
            from tobio.lore.schema import parse_book

            shown = parse_book(name, found[0].data)
        else:
            shown = _lookup(ctx, name, store())
        rows = [entry_row(e) for e in shown.entries]
        return table(["id", "entry", "keys", "secondary", "order", "position", "timing", "decorators", "content"], rows,
                     title=f"lorebook {name}", data={"entries": [e.__dict__ for e in shown.entries]})

    @group.command("import", Arg("file", help="SillyTavern World Info .json (or a card .json: its book)", complete="file"),
                   Arg("--name", help="book name (default: the file name)"), agents="agents")
    async def import_(ctx: Context, file: str, name: str | None) -> Result:
        """Import a World Info file as a new version of a book (stored as is, so export gives it back).
        An agent imports new books only: a new version of an existing one would change others' worlds."""
        path = Path(file).expanduser()
        data = await asyncio.to_thread(read_world_file, path)  # untrusted, up to a few MB: off the loop
        key = slug(name or path.stem, fallback="lorebook")
        if not ctx.caller.privileged and key in store().current:
            raise CommandError(f"agent '{ctx.caller.name}' may not change the existing lorebook '{key}'; give a new --name")
        version = await store().record(key, data, ctx.caller.label, f"imported from {path.name}", str(path))
        entries = len(store().book(key).entries)
        return Result(text=f"imported lorebook '{key}' (version {version}, {entries} entries) from {path.name}")

    @group.command("export", BOOK, Arg("file", help="where to write the JSON", complete="file"),
                   Arg("--force", flag=True, help="overwrite an existing file"), agents="agents")
    async def export(ctx: Context, book: str, file: str, force: bool) -> Result:
        """Write a book as JSON, exactly as it was imported."""
        name = book
        if name.startswith("card:"):
            raise CommandError("a persona's own book travels with its card: use `persona export`")
        version, data = store().get(name)
        blob = (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        target = write_confined(ctx.kernel, ctx.caller, file, blob, force=force)
        return Result(text=f"exported lorebook '{name}' (version {version}) to {target}")

    @group.command("history", BOOK, agents="agents")
    async def history(ctx: Context, book: str) -> Result:
        """Every version of a book: who changed it, when, from where."""
        rows = [(v.version, v.created_at, v.changed_by, v.change) for v in await store().versions(book)]
        return table(["version", "at", "by", "change"], rows)

    # An agent attaches books to itself only: a channel's world is everyone's in it.
    @group.command("attach", BOOK, Arg("--agent", help="an agent: its world", complete="agent"),
                   Arg("--channel", help="a channel: a world shared by everyone in it", complete="channel", reach="fixed"),
                   agents="agents")
    async def attach(ctx: Context, book: str, agent: str | None, channel: str | None) -> Result:
        """Attach a book to an agent or a channel; it takes part from the next reply on."""
        kind, target = _target(agent, channel)
        added = await store().attach(book, kind, target)
        return Result(text=f"lorebook '{book}' {'attached to' if added else 'was already attached to'} {kind} {target}")

    @group.command("detach", BOOK, Arg("--agent", complete="agent"), Arg("--channel", complete="channel", reach="fixed"),
                   agents="agents")
    async def detach(ctx: Context, book: str, agent: str | None, channel: str | None) -> Result:
        """Detach a book from an agent or a channel."""
        kind, target = _target(agent, channel)
        if not await store().detach(book, kind, target):
            raise CommandError(f"lorebook '{book}' is not attached to {kind} {target}")
        return Result(text=f"lorebook '{book}' detached from {kind} {target}")

    @group.command("test", Arg("text", help="what was said (the newest message)"),
                   Arg("--agent", help="use this agent's books and macros", complete="agent"),
                   Arg("--channel", help="also the books of this channel", complete="channel"),
                   Arg("--book", nargs="*", help="test these books instead", reach="book"),
                   Arg("--seed", type=int, help="seed probability rolls"), agents="agents")
    async def test(ctx: Context, text: str, agent: str | None, channel: str | None, book: list[str] | None,
                   seed: int | None) -> Result:
        """Which entries would fire for TEXT, and why the others would not (a dry run: nothing is remembered).
        Books: --book, else the agent's (and --channel's), else the channel's, else every book."""
        hook = module.hook
        assert hook is not None
        live = ctx.kernel.agents.get(agent) if agent else None
        if book:
            books = [_lookup(ctx, b, store()) for b in book]
        elif live is not None:
            books = hook.books(live, channel)
        elif channel:
            books = [store().book(b) for b in store().books_for("", channel)[0]]
        else:  # every book there is: imported ones, then personas' own
            books = [store().book(b) for b in sorted(store().current)] + list(_card_books(ctx.kernel).values())
        if live is not None and hasattr(live, "persona"):
            engine = hook.engine(live, books, None, random.Random(seed) if seed is not None else None)
        else:
            from tobio.lore.engine import Engine, Settings

            cfg = module.settings_now()
            engine = Engine(books, Settings(cfg.scan_depth, cfg.budget_tokens, cfg.recursive, cfg.max_recursion_steps,
                                            cfg.case_sensitive, cfg.match_whole_words),
                            rng=random.Random(seed) if seed is not None else None)
        activation = await engine.run([f"user: {text}"] if live is not None else [text], chat_length=1)
        rows = [(r["entry"], r["label"], "fires" if r["fired"] else "-", r["reason"]) for r in activation.why()]
        note = f"{activation.tokens} tokens of {engine.settings.budget_tokens}; {activation.passes} pass(es)"
        return table(["entry", "label", "", "why"], rows, note=note,
                     data={"fired": [f.entry.key for f in activation.fired], "why": activation.why()})


def _lookup(ctx: Context, name: str, store: LoreStore) -> Book:
    if name.startswith("card:"):
        found = _card_books(ctx.kernel).get(name)
        if found is None:
            raise CommandError(f"no persona lorebook '{name}' (see `lore ls`)")
        return found
    return store.book(name)

