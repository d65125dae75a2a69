"""Swipes on a real kernel and database: an agent's latest reply regenerated three times, the second
chosen; the next prompt, the mood and recall follow the choice, and the others stay in the record, marked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tobio.config.schema import KernelConfig
from tobio.conversation import Conversation
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.memory.config import MemoryConfig
from tobio.memory.module import MemoryModule
from tobio.memory.service import Memory
from tobio.swipes.tables import WithdrawnRow

from conftest import write
from helpers import wait_until

REPLIES = ["What a wonderful lovely day, I love it!",
           "I hate this. Awful, terrible, horrible weather.",
           "Hmm, cheese and pickles.",
           "Great news, fantastic, brilliant!"]
CHANNEL = "dm.user.ada"


def start(url: str, tmp_path: Path) -> Kernel:
    providers = {"s": {"type": "scripted", "replies": REPLIES, "embed_dim": 64},
                 "sum": {"type": "scripted", "replies": ["In short: {last}"], "embed_dim": 64}}
    models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "sum", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    config = KernelConfig(modules=["scripted", "models", "persona", "emotion"], providers=providers, models=models,
                          settings={"emotion": {"appraiser": "lexicon"}})
    kernel = Kernel(config, database=url).start()
    kernel.modules.register(type("SwipeMemory", (MemoryModule,), {"config": MemoryConfig(summarize=False, tokenizer_model="chat-default")}))
    kernel.run("mod load memory")
    write(tmp_path / "ada.persona.yaml", "name: Ada\ndescription: A friend.\n")
    if "ada" not in kernel.agents.live:  # (a kernel on an existing file restores her)
        kernel.run(f"agent spawn {write(tmp_path / 'ada.yaml', 'name: ada' + chr(10) + 'type: persona' + chr(10) + 'persona: ada.persona.yaml' + chr(10))}")
    return kernel


@pytest.fixture
def kernel(db_url: str, tmp_path: Path) -> Iterator[Kernel]:
    kernel = start(db_url, tmp_path)
    try:
        yield kernel
    finally:
        kernel.close()


def settle(kernel: Kernel) -> None:
    kernel.call(Memory.of(kernel).settle())


def mood(kernel: Kernel) -> dict[str, Any]:
    state = kernel.agents.full_state(kernel.agents.live["ada"])
    emotion: dict[str, Any] = state["modules"]["emotion"]
    return emotion


def next_prompt(kernel: Kernel, name: str = "ada", channel: str = CHANNEL) -> str:
    agent = kernel.agents.live[name]
    subscription = kernel.transport.subscription(agent.id, channel)
    assert subscription is not None

    async def build() -> str:
        prompt = await agent.build_prompt(subscription.thread_id)  # type: ignore[attr-defined]
        return "\n".join(str(m["content"]) for m in prompt.messages())

    return kernel.call(build())


def recalled(kernel: Kernel, query: str) -> list[str]:
    agent = kernel.agents.live["ada"]
    return [hit.item.content for hit in kernel.call(Memory.of(kernel).search(agent.id, query, k=10))]


def test_swipe_three_times_and_choose_the_second(kernel: Kernel) -> None:
    async def talk() -> str:
        async with Conversation(kernel, "ada") as conversation:
            reply = await (await conversation.prompt("How is the weather today?")).wait(timeout=30)
            return reply.text

    assert asyncio.run(talk()) == REPLIES[0]
    settle(kernel)
    moods = [mood(kernel)]
    for number in (2, 3, 4):
        result = kernel.run(f"message retry {CHANNEL}")
        assert result.text == f"ada: {REPLIES[number - 1]}"
        assert [row["chosen"] for row in result.data] == [n == number for n in range(1, number + 1)]
        settle(kernel)
        moods.append(mood(kernel))
    assert moods[1]["affect"]["pleasure"] < moods[0]["affect"]["pleasure"]  # "I hate this" felt worse than "lovely"

    chosen = kernel.run(f"message swipe {CHANNEL} 2")
    assert chosen.text == f"ada: {REPLIES[1]}" and [row["chosen"] for row in chosen.data] == [False, True, False, False]
    settle(kernel)

    # The next turn is built as if only the second reply had been said.
    prompt = next_prompt(kernel)
    assert REPLIES[1] in prompt and "How is the weather today?" in prompt
    assert not any(text in prompt for text in (REPLIES[0], REPLIES[2], REPLIES[3]))
    # Mood: exactly the state the second reply left; recall: the rejected replies are not remembered.
    assert mood(kernel) == moods[1] != moods[3]
    assert REPLIES[1] in recalled(kernel, "hate awful terrible weather")
    assert not {REPLIES[0], REPLIES[2], REPLIES[3]} & set(recalled(kernel, "wonderful lovely cheese pickles fantastic brilliant"))
    # The record keeps all four, the rejected ones marked withdrawn; the second was withdrawn and restored.
    listed = kernel.run(f"message alternatives {CHANNEL}")
    assert [row["content"] for row in listed.data] == REPLIES and [row["chosen"] for row in listed.data] == [False, True, False, False]

    def marks(conn: sa.Connection) -> dict[int, list[bool]]:
        out: dict[int, list[bool]] = {}
        for message_id, restored in conn.execute(sa.select(WithdrawnRow.c.message_id, WithdrawnRow.c.restored_at)):
            out.setdefault(message_id, []).append(restored is None)
        return out

    ids = [row["id"] for row in listed.data]
    withdrawn = kernel.call(kernel.db.call(marks))
    assert all(any(withdrawn[i]) for i in (ids[0], ids[2], ids[3]))  # withdrawn now, from every thread it reached
    assert not any(withdrawn[ids[1]])  # withdrawn once, brought back

    # The conversation goes on from the second reply; choosing another of the old turn is then refused.
    async def more() -> str:
        async with Conversation(kernel, "ada") as conversation:
            return (await (await conversation.prompt("Why do you say so?")).wait(timeout=30)).text

    asyncio.run(more())
    assert REPLIES[1] in next_prompt(kernel)
    with pytest.raises(TobioError, match="from 1 to 1"):
        kernel.run(f"message swipe {CHANNEL} 3")


def test_retry_and_swipe_through_the_conversation(kernel: Kernel) -> None:
    """What every front end calls: retry answers on a Response, swipe gives back the chosen message."""
    async def talk() -> tuple[str, str, str, list[bool]]:
        async with Conversation(kernel, "ada") as conversation:
            first = (await (await conversation.prompt("Hello?")).wait(timeout=30)).text
            second = (await (await conversation.retry()).wait(timeout=30)).text
            back = await conversation.swipe(1)
            return first, second, back.content, [a.chosen for a in await conversation.alternatives()]

    first, second, back, chosen = asyncio.run(talk())
    assert (first, second, back, chosen) == (REPLIES[0], REPLIES[1], REPLIES[0], [True, False])
    with pytest.raises(TobioError, match="from 1 to 2"):
        kernel.run(f"message swipe {CHANNEL} 5")


def test_nothing_to_retry_is_one_clear_line(kernel: Kernel) -> None:
    with pytest.raises(TobioError, match="nothing has been said on 'dm.user.nobody'"):
        kernel.run("message retry dm.user.nobody")
    ada = kernel.agents.live["ada"]
    kernel.call(kernel.agents.open_dm("user", "ada"))
    kernel.call(ada.say(CHANNEL, "Hello, I am Ada."))  # said of its own accord (a greeting): it answers nothing
    with pytest.raises(TobioError, match="not a reply; say whose turn"):
        kernel.run(f"message retry {CHANNEL}")
    with pytest.raises(TobioError, match="nothing to answer again"):
        kernel.run(f"message retry {CHANNEL} --agent ada")
    with pytest.raises(TobioError, match="no replies to choose from"):
        kernel.run(f"message swipe {CHANNEL} 1 --agent ada")


def test_the_shell_chat_retries_and_swipes(kernel: Kernel) -> None:
    """`/retry` and `/swipe N` in the shell's chat: what the lines mean, and what the chat prints."""
    from shell.chat import Chat
    from shell.session import Mode, Session

    session = Session(kernel)
    session.enter(Mode("chat", "chat:ada"))
    assert session.plan("/retry").kind == "retry"
    assert session.plan("/swipe 2").args == {"number": 2} and session.plan("/swipe").args == {"number": None}
    assert session.plan("/swipe two").kind == "error"

    async def talk() -> tuple[list[str], str, str]:
        lines: list[str] = []
        chat = Chat(kernel, "ada")
        await chat.open(lambda sender, text: lines.append(f"{sender}: {text}"), lambda: None)
        try:
            await chat.say("Hello?")
            await asyncio.to_thread(wait_until, lambda: len(lines) == 1, 30)
            await chat.retry()
            await asyncio.to_thread(wait_until, lambda: len(lines) == 2, 30)
            chosen = await chat.swipe(1)
            listed = await chat.swipe(None)
            return lines, chosen, listed
        finally:
            chat.close()

    lines, chosen, listed = asyncio.run(talk())
    assert lines == [f"ada: {REPLIES[0]}", f"ada: {REPLIES[1]}", f"ada: {REPLIES[0]}"]
    assert chosen == "reply 1 of 2 chosen; ada goes on from it"
    assert listed == f"* 1. {REPLIES[0]}\n  2. {REPLIES[1]}"


@pytest.mark.slow
def test_the_web_page_retries_and_swipes_the_last_reply(duckdb_url: str, tmp_path: Path) -> None:
    """In a real Chromium: "another reply" streams a second one in place of the first, ◀ brings the first back."""
    from browser import browser, click_button, holding, say, wait_element, wait_gone, wait_text
    from test_web import free_port

    from tobio.web.serve import serve

    kernel = start(duckdb_url, tmp_path)
    server = serve(kernel, "127.0.0.1", free_port())
    try:
        with browser() as page:
            page.get(server.url)
            # the page has opened (its sidebar is filled) before the person speaks: a reply that lands while
            # the page still opens can show "↻ another reply" before the turn is over (reported, tobio/web)
            wait_element(page, "#mood b", 60)
            say(page, "Hello there")
            wait_text(page, REPLIES[0], 60)
            wait_text(page, "1/1", 10)
            click_button(page, "↻ another reply")
            wait_text(page, REPLIES[1], 30)
            wait_text(page, "2/2", 10)
            wait_gone(page, REPLIES[0], 10, "#chat")  # in its place, not under it
            click_button(page, "◀")
            wait_text(page, REPLIES[0], 10)
            wait_text(page, "1/2", 10)
            wait_gone(page, REPLIES[1], 10, "#chat")
            assert len(holding(page, REPLIES[0], "#chat")) == 1
        chosen = kernel.run(f"message alternatives {CHANNEL}").data
        assert [(row["content"], row["chosen"]) for row in chosen] == [(REPLIES[0], True), (REPLIES[1], False)]
    finally:
        server.stop()
        kernel.close()


def test_the_notebook_chatview_retries_and_swipes(tmp_path: Path) -> None:
    """ChatView's "Another reply" replaces the last line with a new alternative; ◀ brings the first back."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from tobio.jupyter import ChatView, close_kernel

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    conf = tmp_path / "conf"
    write(conf / "personas" / "ada.yaml", "name: Ada\ndescription: A friend.\n")
    write(conf / "agents" / "ada.yaml", "name: ada\ntype: persona\npersona: ../personas/ada.yaml\n")
    replies = ", ".join(f"'{r}'" for r in REPLIES)
    write(conf / "kernel.yaml", "modules: [scripted, models, persona]\nagents: [agents/*.yaml]\n"
                                f"providers: {{s: {{type: scripted, replies: [{replies}]}}}}\n"
                                "models: {chat-default: {provider: s, model: x, purpose: chat}}\n")
    shell.run_line_magic("load_ext", "tobio")
    shell.run_line_magic("tobio", f"--config {conf / 'kernel.yaml'} --database duckdb:///{tmp_path / 'nb.duckdb'}")
    try:
        view = ChatView("ada")
        view.text.value = "Hello notebook"
        view.send.click()
        wait_until(lambda: view.counter.value == "<small>1/1</small>", 30)
        view.another.click()
        wait_until(lambda: view.counter.value == "<small>2/2</small>", 30)
        assert [text for _, text in view.lines] == ["Hello notebook", REPLIES[1]]
        view.earlier.click()
        assert [text for _, text in view.lines] == ["Hello notebook", REPLIES[0]]
        assert view.counter.value == "<small>1/2</small>" and view.earlier.disabled and not view.later.disabled
        view.close()
    finally:
        close_kernel()
        InteractiveShell.clear_instance()


def test_edit_and_continue_keeps_the_old_branch_readable(kernel: Kernel) -> None:
    """Edit the person's first line: the conversation goes on from the new one, the agent no longer knows
    what the old one told it, and the old branch is listed and shown."""
    from tobio.people.module import PeopleModule

    kernel.run("mod load people")
    ada = kernel.agents.live["ada"]

    async def talk(*lines: str) -> list[str]:
        async with Conversation(kernel, "ada") as conversation:
            return [(await (await conversation.prompt(line)).wait(timeout=30)).text for line in lines]

    assert asyncio.run(talk("My dog is called Rex.", "Tell me a story.")) == REPLIES[:2]
    settle(kernel)
    people = PeopleModule.of(kernel)
    assert people.known(ada.id, "user").get("dog") == "Rex"
    first = kernel.run("sql SELECT id FROM messages WHERE content = 'My dog is called Rex.'").rows[0][0]

    edited = kernel.run(f"message edit {first} My dog is called Max.")
    branch = f"edit-{first}"
    assert edited.data["branch"] == branch and edited.data["moved"] == 4
    answered = f"sql SELECT count(*) FROM messages WHERE reply_to = {edited.data['id']}"
    wait_until(lambda: kernel.run(answered).rows[0][0] == 1, 30)  # the edited line is answered like any other
    assert ada.turns == 1  # its state went back to before the first line: this is its first turn again
    settle(kernel)
    kernel.call(people.flush())

    prompt = next_prompt(kernel)
    assert "My dog is called Max." in prompt and REPLIES[2] in prompt
    assert not any(text in prompt for text in ("Rex", "Tell me a story.", REPLIES[0], REPLIES[1]))
    assert people.known(ada.id, "user").get("dog") == "Max"
    assert "Rex" not in " ".join(hit.item.content for hit in kernel.call(Memory.of(kernel).search(ada.id, "dog Rex", k=10)))

    listed = kernel.run(f"message branches {CHANNEL}")
    assert [(row[0], row[1], row[2]) for row in listed.rows] == [(branch, first, 4)]
    shown = kernel.run(f"message branch {branch}")
    assert [row[4] for row in shown.rows] == ["My dog is called Rex.", REPLIES[0], "Tell me a story.", REPLIES[1]]
    with pytest.raises(TobioError, match="not in a conversation now"):
        kernel.run(f"message edit {first} again")


ST_HEADER = {"user_name": "Ada", "character_name": "Mika", "create_date": "2023-6-19@14h20m05s", "chat_metadata": {}}
ST_CHAT = [
    {"name": "Ada", "is_user": True, "is_system": False, "send_date": "June 19, 2023 2:21pm", "mes": "Which platform?", "extra": {}},
    {"name": "System", "is_user": False, "is_system": True, "send_date": "June 19, 2023 2:22pm", "mes": "The train is late.",
     "extra": {"type": "narrator"}},
    {"name": "Mika", "is_user": False, "is_system": False, "send_date": "June 19, 2023 2:23pm", "mes": "Platform two.",
     "extra": {}, "swipe_id": 1, "swipes": ["Platform one.", "Platform two.", "No idea, ask the guard."],
     "swipe_info": [{"send_date": "June 19, 2023 2:23pm", "extra": {}}] * 3},
]


def test_sillytavern_swipes_and_narrator_lines_round_trip(duckdb_url: str, tmp_path: Path) -> None:
    """ST's swipes become real alternatives (the chosen one in the histories), a swipe here changes the
    exported choice, and the narrator's lines come in as the channel's system messages."""
    import json

    from test_st_chats import jsonl, spawn, thread_of
    from test_st_chats import start as st_kernel

    source = write(tmp_path / "Mika.jsonl", jsonl(ST_HEADER, *ST_CHAT))
    kernel = st_kernel(duckdb_url, tmp_path)
    try:
        spawn(kernel, tmp_path, "mika")
        out = kernel.run(f"transcript import '{source}' --user ada")
        assert out.data["messages"] == 3 and out.data["alternatives"] == 2
        narrator = kernel.run("sql SELECT agent_id, role FROM messages WHERE content = 'The train is late.'").rows
        assert narrator == [(None, "system")]
        thread = thread_of(kernel, "mika", "st.mika")
        said = kernel.run(f"sql SELECT m.content FROM pushes p JOIN messages m ON m.id = p.message_id WHERE p.thread_id = {thread} ORDER BY m.id")
        assert [row[0] for row in said.rows] == ["Which platform?", "The train is late.", "Platform two."]
        listed = kernel.run("message alternatives st.mika").data
        assert [(row["content"], row["chosen"]) for row in listed] == [
            ("Platform one.", False), ("Platform two.", True), ("No idea, ask the guard.", False)]

        back = tmp_path / "back.jsonl"
        kernel.run(f"transcript export {thread} {back}")
        assert [json.loads(line) for line in back.read_text().splitlines()] == [ST_HEADER, *ST_CHAT]  # same swipes and choice

        kernel.run("message swipe st.mika 3")
        prompt = "\n".join(m["content"] for m in kernel.run("agent prompt mika --channel st.mika").data["messages"])
        assert "No idea, ask the guard." in prompt and "Platform two." not in prompt
        again = tmp_path / "again.jsonl"
        kernel.run(f"transcript export {thread} {again}")
        mika = [json.loads(line) for line in again.read_text().splitlines()][-1]
        assert (mika["swipe_id"], mika["mes"], mika["swipes"]) == (2, "No idea, ask the guard.", ST_CHAT[2]["swipes"])
        kernel.run(f"transcript import '{again}' --user ada --channel st.again")  # and back in: the same choice
        assert [row["chosen"] for row in kernel.run("message alternatives st.again").data] == [False, False, True]
    finally:
        kernel.close()


def test_an_edit_says_which_summaries_already_hold_the_old_text(duckdb_url: str, tmp_path: Path) -> None:
    """Summaries are append-only: an edit of a message memory already summarised says so (and still works)."""
    from test_st_chats import jsonl, spawn, thread_of
    from test_st_chats import start as st_kernel

    chatter = [{"name": ("Mika", "Ada")[i % 2], "is_user": i % 2 == 1, "is_system": False,
                "send_date": f"March 3, 2024 10:{i:02d}am", "mes": f"Line {i} about trains, tunnels and the long coast road.",
                "extra": {}} for i in range(40)]
    kernel = st_kernel(duckdb_url, tmp_path, memory=True)
    try:
        spawn(kernel, tmp_path, "mika")
        kernel.run(f"transcript import {write(tmp_path / 'long.jsonl', jsonl(*chatter))} --user ada --channel long --backfill")
        assert kernel.run(f"sql SELECT count(*) FROM summaries WHERE thread_id = {thread_of(kernel, 'mika', 'long')}").rows[0][0] >= 1
        first = kernel.run("sql SELECT min(id) FROM messages WHERE channel = 'long'").rows[0][0]
        edited = kernel.run(f"message edit {first + 1} Line 1 is about boats instead.")
        assert edited.data["moved"] == 39 and "mika@long" in edited.data["summarised"]
        assert "already fold the old text in" in (edited.text or "")
    finally:
        kernel.close()


def test_what_another_agent_learnt_from_a_reply_follows_the_swipe(db_url: str, tmp_path: Path) -> None:
    """In a shared room, ada (listening) learns about bob from his reply: a swipe to another reply changes
    what she believes, and swiping back brings the first belief back."""
    providers = {"s": {"type": "scripted", "replies": ["My dog is called Rex.", "My dog is called Max."]}}
    models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"}}
    kernel = Kernel(KernelConfig(modules=["scripted", "models", "persona", "people"], providers=providers, models=models),
                    database=db_url).start()
    try:
        for name in ("ada", "bob"):
            write(tmp_path / f"{name}.persona.yaml", f"name: {name.title()}\ndescription: A friend.\n")
            kernel.run(f"agent spawn {write(tmp_path / f'{name}.yaml', f'name: {name}' + chr(10) + 'type: persona' + chr(10) + f'persona: {name}.persona.yaml' + chr(10) + 'channels: [room]' + chr(10))}")
        kernel.run("agent pause ada")  # she listens (and learns), bob answers
        from tobio.people.module import PeopleModule

        people, ada = PeopleModule.of(kernel), kernel.agents.live["ada"]

        async def hello() -> None:
            person = await kernel.agents.ensure_user("user", ("room",))
            await kernel.transport.post("room", "Hello, bob!", sender=person, role="user")

        kernel.call(hello())
        wait_until(lambda: people.known(ada.id, "bob").get("dog") == "Rex", 30)
        assert kernel.run("message retry room --agent bob").text == "bob: My dog is called Max."
        wait_until(lambda: people.known(ada.id, "bob").get("dog") == "Max", 30)
        kernel.run("message swipe room 1")
        assert people.known(ada.id, "bob").get("dog") == "Rex"
        kernel.run("message swipe room 2")
        assert people.known(ada.id, "bob").get("dog") == "Max"
        kernel.call(people.flush())
        current = kernel.run(f"sql SELECT value FROM people_facts WHERE agent_id = {ada.id} AND key = 'dog' "
                             "AND superseded_at IS NULL AND retracted_at IS NULL").rows
        assert current == [("Max",)]  # the record agrees with what she holds in memory
    finally:
        kernel.close()


def test_a_swipe_survives_a_restart(duckdb_url: str, tmp_path: Path) -> None:
    """The choice, the histories and the state are the record's: a new kernel on the same file has them,
    and retries again from the same turn start."""
    kernel = start(duckdb_url, tmp_path)
    try:
        async def talk() -> None:
            async with Conversation(kernel, "ada") as conversation:
                await (await conversation.prompt("How is the weather today?")).wait(timeout=30)

        asyncio.run(talk())
        kernel.run(f"message retry {CHANNEL}")
        kernel.run(f"message swipe {CHANNEL} 1")
        settle(kernel)
        chosen_mood, prompt = mood(kernel), next_prompt(kernel)
    finally:
        kernel.close()
    kernel = start(duckdb_url, tmp_path)
    try:
        assert [row["chosen"] for row in kernel.run(f"message alternatives {CHANNEL}").data] == [True, False]
        assert next_prompt(kernel) == prompt and REPLIES[0] in prompt and REPLIES[1] not in prompt
        assert mood(kernel) == chosen_mood
        assert kernel.run(f"message retry {CHANNEL}").text == f"ada: {REPLIES[0]}"  # a new kernel's model: its replies from the top
        assert [row["chosen"] for row in kernel.run(f"message alternatives {CHANNEL}").data] == [False, False, True]
    finally:
        kernel.close()


def test_a_fork_made_after_a_swipe_has_only_the_chosen_reply_and_swipes_on_its_own(kernel: Kernel) -> None:
    """Swipes and forks together: the fork carries the histories as chosen (withdrawn replies stay behind),
    and a retry in the fork leaves the parent's choice alone."""
    async def talk(agent: str, text: str) -> str:
        async with Conversation(kernel, agent) as conversation:
            return (await (await conversation.prompt(text)).wait(timeout=30)).text

    asyncio.run(talk("ada", "How is the weather today?"))
    kernel.run(f"message retry {CHANNEL}")
    kernel.run(f"message swipe {CHANNEL} 2")
    settle(kernel)
    kernel.run("agent fork ada --at now --as ada2")
    fork_channel = "dm.user.ada2"
    prompt = next_prompt(kernel, "ada2", fork_channel)
    assert REPLIES[1] in prompt and REPLIES[0] not in prompt

    asyncio.run(talk("ada2", "And tomorrow?"))
    kernel.run(f"message retry {fork_channel}")
    kernel.run(f"message swipe {fork_channel} 1")
    assert [row["chosen"] for row in kernel.run(f"message alternatives {CHANNEL}").data] == [False, True]
    assert REPLIES[1] in next_prompt(kernel) and REPLIES[0] not in next_prompt(kernel)


def test_replay_shows_each_moment_as_it_was_before_and_after_a_swipe(kernel: Kernel) -> None:
    """`agent replay --at` reads the record as it stood: before the retry, the first reply is in the
    history; after choosing the second, only the second is."""
    import time

    from tobio.db.migrations import utcnow
    from tobio.replay import parse_time, replay

    async def talk() -> str:
        async with Conversation(kernel, "ada") as conversation:
            return (await (await conversation.prompt("How is the weather today?")).wait(timeout=30)).text

    asyncio.run(talk())
    settle(kernel)
    time.sleep(0.05)
    before_retry = utcnow().isoformat()
    time.sleep(0.05)
    kernel.run(f"message retry {CHANNEL}")
    settle(kernel)

    def said_in(at: str) -> list[str]:
        snapshot = kernel.call(replay(kernel, "ada", parse_time(at)))
        return [m.content for t in snapshot.threads if t.channel == CHANNEL for m in t.messages]

    assert said_in(before_retry) == ["How is the weather today?", REPLIES[0]]
    assert said_in("now") == ["How is the weather today?", REPLIES[1]]
    kernel.run(f"message swipe {CHANNEL} 1")
    assert said_in(before_retry) == ["How is the weather today?", REPLIES[0]]
    assert said_in("now") == ["How is the weather today?", REPLIES[0]]
