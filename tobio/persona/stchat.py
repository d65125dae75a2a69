"""SillyTavern chats in and out: a chat JSONL becomes threads (the subjective history of everyone named in
it, at its own timestamps), and a thread becomes a chat JSONL.

ST's format (public/script.js `saveChat`, src/endpoints/chats.js): one JSON object per line; a single
chat starts with a header `{user_name, character_name, create_date, chat_metadata}`, a group chat may
not; each message has `name`, `is_user`, `is_system`, `send_date`, `mes` and optional `extra`,
`swipes`, `force_avatar` … Imported messages keep every field but `mes` in `metadata.st`, so an export
gives the same lines back. Times without a zone are read as UTC (ST writes the local time of the
machine it ran on, which the file does not say).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.config.jsondata import loads
from tobio.db.history import thread_messages
from tobio.db.migrations import utcnow
from tobio.db.tables import AgentRow, MessageRow, ThreadRow
from tobio.errors import CommandError, ConfigError
from tobio.paths import slug
from tobio.transport import CHANNEL_COLUMNS, MESSAGE_COLUMNS, PUSH_COLUMNS, THREAD_COLUMNS

if TYPE_CHECKING:
    from tobio.kernel import Kernel

MAX_CHAT_BYTES = 64 * 1024 * 1024
MAX_MESSAGES = 200_000
MAX_LINE_DEPTH = 32
MAX_SPEAKERS = 32  # distinct names in one chat (a big ST group chat has a dozen); each becomes a thread
MAX_PUSHES = 500_000  # messages x threads an import writes (every message reaches every thread; ~60 MB of rows)
WRITE_CHUNK = 4000  # rows per insert of an import
MAX_NAME_CHARS = 128
MAX_DATE_CHARS = 64  # a `send_date` longer than this is not one ST wrote
LOCAL_USER = "user"  # the person at this kernel's front ends: never a default target of an import
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MERIDIEM = re.compile(r"(\w+)\s(\d{1,2}),\s(\d{4})\s(\d{1,2}):(\d{1,2})(am|pm)", re.IGNORECASE)
_HUMANIZED = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})\s?@(\d{1,2})h\s?(\d{1,2})m\s?(\d{1,2})s(?:\s(\d{1,3})ms)?")


@dataclass
class ChatLine:
    """One message of a chat file."""

    name: str
    text: str
    is_user: bool
    is_system: bool
    at: datetime | None
    raw: dict[str, Any]


@dataclass
class Chat:
    """A parsed chat. Read `speakers` and `users` only once `lines` is complete (they are cached)."""

    header: dict[str, Any] | None
    lines: list[ChatLine] = field(default_factory=list)

    @cached_property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(line.name for line in self.lines))

    @cached_property
    def users(self) -> set[str]:
        """Speakers that are the person in the chat (`is_user` on any of their lines)."""
        return {line.name for line in self.lines if line.is_user}

    @cached_property
    def narrators(self) -> set[str]:
        """Speakers all of whose lines are system lines (ST's narrator, "System"): the channel's own voice."""
        return {name for name in self.speakers if all(line.is_system and not line.is_user for line in self.lines if line.name == name)}

    @property
    def is_group(self) -> bool:
        return len({line.name for line in self.lines if not line.is_user and not line.is_system}) > 1


def parse_time(value: Any) -> datetime | None:
    """ST's `send_date` in any of the forms it has written, as naive UTC; None when unreadable."""
    when = _parse_time(value)
    return when if when is not None and MIN_YEAR <= when.year <= MAX_YEAR else None


MIN_YEAR, MAX_YEAR = 1970, 2200  # outside these a date is garbage, and near datetime's limits arithmetic overflows


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if len(value) > MAX_DATE_CHARS:
            return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        try:
            return datetime.fromtimestamp(float(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):
        pass
    try:
        if match := _MERIDIEM.search(text):
            month, day, year, hour, minute, meridiem = match.groups()
            hour24 = int(hour) % 12 + (12 if meridiem.lower() == "pm" else 0)
            return datetime(int(year), _MONTHS.index(month.lower()) + 1, int(day), hour24, int(minute))
        if match := _HUMANIZED.search(text):
            y, mo, d, h, mi, s, ms = match.groups()
            return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int(ms or 0) * 1000)
    except (ValueError, OverflowError):
        return None
    return None


def format_time(when: datetime) -> str:
    """ST's `getMessageTimeStamp` form: `June 19, 2023 2:20pm`."""
    hour = when.hour % 12 or 12
    return f"{_MONTHS[when.month - 1].title()} {when.day}, {when.year} {hour}:{when.minute:02d}{'am' if when.hour < 12 else 'pm'}"


def humanized(when: datetime) -> str:
    """ST's `humanizedISO8601DateTime`, used for `create_date`."""
    return f"{when.year}-{when.month}-{when.day} @{when.hour:02d}h {when.minute:02d}m {when.second:02d}s {when.microsecond // 1000:02d}ms"


def read_chat(path: str | Path) -> Chat:
    """Parse a chat JSONL (single or group). Hostile input: size, line count and nesting are capped."""
    file = Path(path).expanduser()
    try:
        if file.stat().st_size > MAX_CHAT_BYTES:
            raise ConfigError(f"{file}: larger than {MAX_CHAT_BYTES} bytes")
        text = file.read_bytes()[: MAX_CHAT_BYTES + 1].decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    chat = Chat(header=None)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        item = loads(line, f"{file}:{number}", limit=MAX_LINE_DEPTH)
        if not isinstance(item, dict):
            raise ConfigError(f"{file}:{number}: each line of a chat is a JSON object")
        if "mes" not in item and chat.header is None and not chat.lines:
            chat.header = item
            continue
        if "mes" not in item:
            raise ConfigError(f"{file}:{number}: a message needs `mes`")
        if len(chat.lines) >= MAX_MESSAGES:
            raise ConfigError(f"{file}: more than {MAX_MESSAGES} messages")
        name = item.get("name")
        name = str(name)[:MAX_NAME_CHARS] if isinstance(name, (str, int, float)) and str(name).strip() else None
        chat.lines.append(ChatLine(name or ("You" if item.get("is_user") else "Narrator"),
                                   str(item.get("mes") or ""), bool(item.get("is_user")), bool(item.get("is_system")),
                                   parse_time(item.get("send_date")), item))
    if not chat.lines:
        raise ConfigError(f"{file}: no messages")
    if len(chat.speakers) > MAX_SPEAKERS:
        raise ConfigError(f"{file}: {len(chat.speakers)} different speakers (at most {MAX_SPEAKERS}: each one becomes "
                          "an agent with a thread that receives every message)")
    return chat


def chat_to_jsonl(header: dict[str, Any] | None, lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in ([header] if header else []) + lines)


# --- import ---------------------------------------------------------------------------------------


async def import_chat(kernel: Kernel, chat: Chat, channel: str, names: dict[str, str | None], source: str) -> dict[str, Any]:
    """Write `chat` as history: one thread per agent on `channel`, every message pushed to each thread,
    at the file's times. `names` maps each speaker to an agent (users are made into user agents), or to
    None: a narrator, whose lines are the channel's system messages.

    A character's line with `swipes` becomes that many replies to the line before it, the one `swipe_id`
    names in the histories and the others withdrawn alternatives (tobio/swipes): `message swipe` chooses
    among them as among replies regenerated here."""
    targets = {name for name in names.values() if name is not None}
    if len(chat.lines) * len(targets) > MAX_PUSHES:
        raise CommandError(f"{source}: {len(chat.lines)} messages to {len(targets)} threads is more than {MAX_PUSHES} "
                           "deliveries: split the chat, or map speakers onto fewer agents with --as NAME=AGENT")
    users = {name for speaker in chat.users for name in [names[speaker]] if name is not None}
    await kernel.flush()
    rows = await kernel.db.call(lambda c: {r.name: (r.id, r.type) for r in c.execute(sa.select(AgentRow))})
    missing = sorted(targets - users - set(rows))
    if missing:
        raise CommandError(f"no agent named {', '.join(missing)}: spawn them first or map names with --as NAME=AGENT")
    not_users = sorted(u for u in users if u in rows and rows[u][1] != "user")
    if not_users:
        raise CommandError(f"{', '.join(not_users)}: the chat's person would be written as an agent that is not a user; "
                           "map them with --user NAME")
    taken = await kernel.db.call(lambda c: set(c.execute(sa.select(ThreadRow.c.agent_id).where(
        ThreadRow.c.channel == channel, ThreadRow.c.closed_at.is_(None))).scalars()))
    if taken & {rows[t][0] for t in targets if t in rows}:
        raise CommandError(f"channel {channel} already has threads of these agents: import into another (--channel)")
    agents: dict[str, int] = {}
    for target in sorted(users):  # only now that nothing else can refuse the import
        agents[target] = (await kernel.agents.ensure_user(target)).id
    await kernel.flush()
    rows = await kernel.db.call(lambda c: {r.name: (r.id, r.type) for r in c.execute(sa.select(AgentRow))})
    agents.update({name: rows[name][0] for s in chat.speakers for name in [names[s]] if name is not None})
    threads = {agent_id: kernel.db.next_ids("threads") for agent_id in agents.values()}
    choices = [_swipes(line) if i and not line.is_user and names[line.name] is not None else None for i, line in enumerate(chat.lines)]
    count = sum(len(c[0]) if c else 1 for c in choices)
    if count > MAX_MESSAGES:
        raise CommandError(f"{source}: {count} messages with their swipes (at most {MAX_MESSAGES})")
    if any(choices):
        from tobio.swipes.service import Swipes

        await Swipes.of(kernel).ready()  # the table the alternatives' pushes are kept in
    base = kernel.db.next_ids("messages", count)
    imported_at = utcnow()

    def build() -> tuple[list[Any], list[Any], list[Any], dict[int, list[int]], datetime, datetime]:
        """The rows (on a worker thread: a big chat is millions of them)."""
        times: list[datetime] = []
        for line in chat.lines:  # unreadable times follow the one before (by a millisecond)
            times.append(line.at or (times[-1] + timedelta(milliseconds=1) if times else utcnow()))
        messages, pushes, withdrawn = [], [], []
        replies: dict[int, list[int]] = {}  # the line before -> the alternatives answering it
        header = chat.header
        next_id, previous = base, None
        for i, (line, when, choice) in enumerate(zip(chat.lines, times, choices)):
            name = names[line.name]
            sender = agents[name] if name is not None else None
            st = {k: v for k, v in line.raw.items() if k != "mes"}
            role = "system" if line.is_system else "user" if line.is_user else "assistant"
            texts, chosen, at = choice if choice else ([line.text], 0, [when])
            ids = list(range(next_id, next_id + len(texts)))
            for j, (message_id, text) in enumerate(zip(ids, texts)):
                meta: dict[str, Any] = {"st": st, "imported_from": source}
                if i == 0 and header is not None:
                    meta["st_header"] = header
                if choice:
                    meta["swipe"] = j
                messages.append((message_id, sender, threads[sender] if sender is not None else None, channel, role,
                                 at[j] or when, line.text if j == chosen else text, meta))
                rows = [(thread_id, message_id) for thread_id in threads.values()]
                if j == chosen:
                    pushes += rows
                else:
                    withdrawn += [(t, m, "swipe", None, imported_at, None) for t, m in rows]
            if choice and previous is not None:
                replies[previous] = ids
            previous, next_id = ids[chosen], next_id + len(ids)
        return messages, pushes, withdrawn, replies, min(times), max(times)

    messages, pushes, withdrawn, replies, first, last = await asyncio.to_thread(build)
    thread_rows = [(tid, aid, channel, f"{name}@{channel}", first, None, None, base + count - 1)
                   for name, aid in agents.items() for tid in [threads[aid]]]
    channel_rows = [] if channel in kernel.transport.known_channels() else [(channel, f"imported from {source}", first)]

    def rest(conn: Connection) -> None:
        """The messages and pushes, in the same transaction as the threads, a few thousand rows at a time:
        one insert of hundreds of thousands holds the GIL (so the kernel's loop) for 100 ms and more.
        Then the agents are backdated: they existed when the chat happened (`agent replay` finds them)."""
        from tobio.swipes.tables import WITHDRAWN_COLUMNS

        for table, columns, rows in (("messages", MESSAGE_COLUMNS, messages), ("pushes", PUSH_COLUMNS, pushes),
                                     ("withdrawn_pushes", WITHDRAWN_COLUMNS, withdrawn)):
            for start in range(0, len(rows), WRITE_CHUNK):
                kernel.db.bulk_insert(conn, table, columns, rows[start:start + WRITE_CHUNK])
                time.sleep(0)  # let the loop's thread have the GIL between pieces
        for answered, ids in replies.items():  # alternatives answer the line before them
            conn.execute(sa.update(MessageRow).where(MessageRow.c.id.in_(ids)).values(reply_to=answered))
        conn.execute(sa.update(AgentRow).where(AgentRow.c.id.in_(list(agents.values())), AgentRow.c.created_at > first)
                     .values(created_at=first))

    await kernel.writer.write(("channels", CHANNEL_COLUMNS, channel_rows), ("threads", THREAD_COLUMNS, thread_rows),
                              then=rest)
    for name, agent_id in agents.items():
        live = kernel.agents.live.get(name)
        if live is not None:  # the conversation can go on: new posts reach the imported thread
            kernel.transport.restore(live, channel, threads[agent_id])
    return {"channel": channel, "messages": len(chat.lines), "alternatives": len(messages) - len(chat.lines), "threads": {n: threads[a] for n, a in agents.items()},
            "first": first, "last": last, "agents": agents}


def _swipes(line: ChatLine) -> tuple[list[str], int, list[datetime | None]] | None:
    """(texts, chosen, times) of a character line's swipes, when it has more than one and names which."""
    swipes, chosen = line.raw.get("swipes"), line.raw.get("swipe_id")
    if (not isinstance(swipes, list) or len(swipes) < 2 or not all(isinstance(s, str) for s in swipes)
            or not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen < len(swipes)):
        return None
    info = line.raw.get("swipe_info")
    info = info if isinstance(info, list) else []
    times = [parse_time(i.get("send_date")) if isinstance(i, dict) else None for i in info][: len(swipes)]
    return list(swipes), chosen, times + [None] * (len(swipes) - len(times))


def looks_like(name: str) -> str:
    """What a name reads as: NFKC, case-folded, format characters (zero-width and such) and spaces dropped,
    then as the ASCII slug agents are named by. `User`, `ｕｓｅｒ` and `user\u200b` all read as `user`."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return slug("".join(c for c in folded if unicodedata.category(c) not in ("Cf", "Cc", "Zs")), fallback="")


def map_names(chat: Chat, pairs: list[str], user: str | None, kernel: Kernel,
              notes: list[str] | None = None) -> dict[str, str | None]:
    """Speaker -> agent name: `--as NAME=AGENT`, users to `--user` (or their slug), characters to the
    live agent of that name or persona name, else their slug; a narrator (only system lines, no agent
    of that name) to None: its lines are the channel's system messages, as SillyTavern shows them.

    Only an explicit `--user`/`--as` writes as the local user or as an agent whose name the speaker's
    merely looks like: a person called `User` (or `ｕｓｅｒ`) is imported as `st-user`, said in `notes`,
    and a character that only looks like a live agent's name is refused."""
    explicit: dict[str, str] = {}
    for pair in pairs:
        name, sep, agent = pair.partition("=")
        if not sep or not agent.strip():
            raise CommandError(f"--as takes NAME=AGENT, not {pair!r}")
        explicit[name.strip()] = agent.strip()
    live = kernel.agents.live
    by_persona = {getattr(getattr(a, "persona", None), "name", None): n for n, a in live.items()}
    is_user = chat.users
    out: dict[str, str | None] = {}
    for speaker in chat.speakers:
        if speaker in explicit:
            out[speaker] = explicit[speaker]
        elif speaker in chat.narrators and speaker not in live and speaker not in by_persona:
            out[speaker] = None
        elif speaker in is_user and user:
            out[speaker] = user
        elif speaker in is_user:
            target = slug(speaker, fallback="person")
            if looks_like(speaker) == LOCAL_USER or target == LOCAL_USER or target in live and live[target].type_name != "user":
                target = f"st-{target}"
                if notes is not None:
                    notes.append(f"the chat's person {speaker!r} is imported as '{target}', not as the local user "
                                 f"(--user user puts them there)")
            out[speaker] = target
        elif speaker in live or speaker in by_persona:
            out[speaker] = speaker if speaker in live else by_persona[speaker] or speaker
        else:
            target = slug(speaker, fallback="narrator")
            if target == LOCAL_USER or looks_like(speaker) == LOCAL_USER or (
                    target in live and speaker.strip().casefold() != target):
                raise CommandError(f"speaker {speaker!r} only looks like the agent '{target}': "
                                   f"map it with --as {speaker!r}=AGENT")
            out[speaker] = target
    return out


# --- export ---------------------------------------------------------------------------------------


async def export_thread(kernel: Kernel, thread_id: int) -> str:
    """The thread as a SillyTavern chat JSONL (imported messages exactly as they came)."""
    await kernel.flush()

    def read(conn: Connection) -> tuple[Any, list[Any], dict[str, str], dict[int, tuple[list[str], int]]]:
        from tobio.swipes.store import alternatives_in

        thread = conn.execute(sa.select(ThreadRow, AgentRow.c.name.label("owner")).join(AgentRow, AgentRow.c.id == ThreadRow.c.agent_id)
                              .where(ThreadRow.c.id == thread_id)).first()
        types = {r.name: r.type for r in conn.execute(sa.select(AgentRow.c.name, AgentRow.c.type))}
        if thread is None:
            return None, [], types, {}
        return thread, thread_messages(conn, thread_id), types, alternatives_in(conn, thread_id)

    thread, messages, types, swipes = await kernel.db.call(read)
    if thread is None:
        raise CommandError(f"no thread {thread_id} (see `thread ls`)")
    header = None
    lines = []
    shown = {name: getattr(getattr(agent, "persona", None), "name", name) for name, agent in kernel.agents.live.items()}
    for message in messages:
        meta = message.metadata or {}
        st = meta.get("st") if isinstance(meta.get("st"), dict) else None
        if header is None and isinstance(meta.get("st_header"), dict):
            header = meta["st_header"]
        if st is not None:
            line = _with_mes(st, message.content)
        else:
            is_user = types.get(message.sender or "") == "user"
            line = {"name": shown.get(message.sender or "", message.sender) or "System", "is_user": is_user,
                    "is_system": message.sender is None and not is_user, "send_date": format_time(message.created_at),
                    "mes": message.content, "extra": {}}
        if message.id in swipes:  # the turn's alternatives, the chosen one named (as imported, or swiped here since)
            texts, chosen = swipes[message.id]
            line["swipe_id"], line["swipes"] = chosen, texts
            info = line.get("swipe_info")
            if isinstance(info, list) and len(info) < len(texts):
                line["swipe_info"] = info + [{"send_date": format_time(message.created_at), "extra": {}}] * (len(texts) - len(info))
        lines.append(line)
    if header is None and not any(m.metadata and "st" in m.metadata for m in messages):
        users = [m.sender for m in messages if types.get(m.sender or "") == "user"]
        header = {"user_name": users[0] if users else "User", "character_name": shown.get(thread.owner, thread.owner),
                  "create_date": humanized(thread.opened_at), "chat_metadata": {}}
    return chat_to_jsonl(header, lines)


def _with_mes(st: dict[str, Any], text: str) -> dict[str, Any]:
    """The original line with `mes` back in ST's place (after `send_date`), so files compare equal."""
    out: dict[str, Any] = {}
    for key, value in st.items():
        out[key] = value
        if key == "send_date":
            out["mes"] = text
    out.setdefault("mes", text)
    return out
