// The chat page: one websocket to the server (tobio/web/app.py); everything the person does is a JSON
// request on it, everything shown comes back as JSON. Chat text arrives as HTML the server rendered and
// cleaned (tobio/web/safe.py); all other text is set as text, never as markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const chat = $("chat"), box = $("box"), agentSelect = $("agent");
  const lines = new Map();  // line id -> its element
  let busy = false;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ws`);

  // Requests made while the socket still connects wait for it (a line typed as the page opens is kept);
  // once it is closed, send() says so and returns false, so the caller keeps what the user typed.
  const waiting = [];
  const send = (request) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(request));
    else if (socket.readyState === WebSocket.CONNECTING) waiting.push(request);
    else {
      status("disconnected from the server: reload the page");
      return false;
    }
    return true;
  };
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const child of children) node.append(child);
    return node;
  };
  const status = (text) => { $("status").textContent = text; };

  function showLine({ id, who, mine, html, streaming }) {
    let node = lines.get(id);
    if (!node) {
      node = el("div", { className: "msg" }, el("div", { className: "who" }), el("div", { className: "body" }));
      lines.set(id, node);
      chat.append(node);
    }
    node.classList.toggle("mine", Boolean(mine));
    node.classList.toggle("streaming", Boolean(streaming));
    node.querySelector(".who").textContent = who;
    node.querySelector(".body").innerHTML = html;  // rendered and cleaned on the server (safe.py)
    chat.scrollTop = chat.scrollHeight;
  }

  function setBusy(now) {
    busy = now;
    $("send").hidden = now;
    $("stop").hidden = !now;
  }

  function note(text) {
    if (text) chat.append(el("div", { className: "msg note", textContent: text }));
  }

  function moodBars(mood) {
    const target = $("mood");
    target.replaceChildren();
    if (mood.error) { target.append(el("i", { textContent: mood.error })); return; }
    target.append(el("div", {}, el("b", { textContent: mood.label || "" })));
    for (const row of mood.rows) {
      const fill = el("span", { className: row.now >= 0 ? "fill" : "fill neg" });
      fill.style.width = `${Math.min(50, Math.abs(row.now) * 50).toFixed(0)}%`;
      target.append(el("div", { className: "bar" }, el("span", { className: "name", textContent: row.dimension }),
        el("span", { className: "track" }, fill),
        el("span", { className: "num", textContent: (row.now >= 0 ? "+" : "") + row.now.toFixed(2) })));
    }
  }

  // One line per row, each with a button that corrects it; an error stands alone.
  function fixes(target, found, show, label, op) {
    target.replaceChildren();
    if (!found) { target.append(el("i", { textContent: "nothing yet" })); return; }
    if (found.error) { target.append(el("i", { textContent: found.error })); return; }
    if (!found.rows.length) { target.append(el("i", { textContent: "nothing yet" })); return; }
    found.rows.forEach((row, index) => {
      const button = el("button", { type: "button", textContent: label });
      button.addEventListener("click", () => send({ op, index }));
      target.append(el("div", { className: "item" }, el("span", { className: "text" }, ...show(row)), button));
    });
  }

  function threads(found) {
    const target = $("threads");
    target.replaceChildren();
    if (found.error) { target.append(el("i", { textContent: found.error })); return; }
    const table = el("table", {}, el("tr", {}, ...["thread", "channel", "msgs", ""].map((h) => el("th", { textContent: h }))));
    for (const r of found.rows) {
      table.append(el("tr", {}, ...[r.thread, r.channel, r.messages, r.closed ? "closed" : "open"]
        .map((v) => el("td", { textContent: String(v) }))));
    }
    target.append(table);
  }

  function sidebar(data) {
    if (data.agent !== agentSelect.value) return;
    if (data.mood) moodBars(data.mood);
    const trace = $("trace");
    if (data.trace && data.trace.svg) {
      trace.src = `data:image/svg+xml;base64,${data.trace.svg}`;
      trace.alt = data.trace.alt;
      trace.hidden = false;
    } else {
      trace.hidden = true;
    }
    if ("memories" in data) {
      fixes($("memories"), data.memories, (r) => [r.content, " ", el("small", { textContent: `(${r.sender}, score ${r.score})` })],
        "forget", "forget");
    }
    if ("facts" in data) {
      fixes($("facts"), data.facts, (r) => [el("b", { textContent: r.key }), `: ${r.value}`], "wrong", "wrong");
    }
    threads(data.threads);
  }

  function swipes({ chosen, count, another, busy: retrying }) {
    $("counter").textContent = count ? `${chosen}/${count}` : "";
    $("earlier").disabled = retrying || chosen <= 1;
    $("later").disabled = retrying || !count || chosen >= count;
    $("another").disabled = retrying || !another;
  }

  const handlers = {
    agents({ agents, agent }) {
      agentSelect.replaceChildren(...agents.map((name) => el("option", { value: name, textContent: name })));
      if (agent) agentSelect.value = agent;
    },
    history({ lines: shown, note: said }) {
      chat.replaceChildren();
      lines.clear();
      note(said);
      shown.forEach(showLine);
    },
    line: showLine,
    busy: ({ busy: now }) => setBusy(now),
    swipes,
    sidebar,
    fixed({ text, error }) {
      const fixed = $("fixed");
      fixed.textContent = text;
      fixed.classList.toggle("error", Boolean(error));
    },
    corrected() { $("correction").value = ""; },
    notice: ({ text }) => status(text),
  };

  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    const handle = handlers[message.type];
    if (handle) handle(message);
  });
  socket.addEventListener("open", () => {
    status("");
    for (const request of waiting.splice(0)) socket.send(JSON.stringify(request));
  });
  socket.addEventListener("close", () => { setBusy(false); status("disconnected from the server: reload the page"); });

  function say() {
    const text = box.value;
    if (!text.trim() || busy) return;
    status("");
    if (send({ op: "say", text })) box.value = "";
  }
  $("say").addEventListener("submit", (event) => { event.preventDefault(); say(); });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); say(); }
  });
  $("stop").addEventListener("click", () => send({ op: "stop" }));
  agentSelect.addEventListener("change", () => send({ op: "open", agent: agentSelect.value }));
  $("earlier").addEventListener("click", () => send({ op: "swipe", step: -1 }));
  $("later").addEventListener("click", () => send({ op: "swipe", step: 1 }));
  $("another").addEventListener("click", () => send({ op: "retry" }));
  $("correct-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send({ op: "correct", text: $("correction").value });
  });
})();
