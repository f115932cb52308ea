// The battle page: one websocket, sides A and B, votes and the reveal. Model text is inserted as text while it
// streams and replaced by the server's sanitised markdown once a side finishes; nothing here builds HTML from
// model output.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("arena-config").textContent);
  const mode = config.mode;
  const labels = mode === "direct" ? ["A"] : ["A", "B"];
  const $ = (sel) => document.querySelector(sel);
  const notice = $("#notice");
  const promptBox = $("#prompt");
  const sendButton = $("#send");
  const regenerateButton = $("#regenerate");
  const counter = $("#counter");
  const voteButtons = Array.from(document.querySelectorAll(".vote"));

  let socket = null;
  let battleId = null;
  let voted = false;
  let starting = false;
  let turns = { A: [], B: [] }; // per side: [{turn, attempt, status, text, el}]

  function say(message, kind) {
    notice.textContent = message || "";
    notice.className = "notice" + (kind ? " " + kind : "");
  }

  function fillPickers() {
    if (mode === "anonymous") return;
    labels.forEach((label, i) => {
      const select = document.getElementById("pick-" + label);
      if (!select) return;
      config.models.forEach((m, j) => {
        const option = document.createElement("option");
        option.value = m.slug;
        option.textContent = m.organization ? m.name + " · " + m.organization : m.name;
        if (j === i) option.selected = true;
        select.appendChild(option);
      });
    });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + location.host + "/ws/battle/");
    socket.addEventListener("open", () => {
      if (notice.textContent.startsWith("Connection lost")) say("");
      if (battleId) socket.send(JSON.stringify({ type: "resume", battle: battleId }));
      update();
    });
    socket.addEventListener("message", (e) => handle(JSON.parse(e.data)));
    socket.addEventListener("close", () => {
      if (!notice.classList.contains("error")) say("Connection lost. Reconnecting…", "error");
      update();
      setTimeout(connect, 1500);
    });
  }

  function send(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      say("Reconnecting… try again in a moment.", "error");
      return false;
    }
    socket.send(JSON.stringify(message));
    return true;
  }

  function conversation(label) {
    return document.querySelector('[data-conversation="' + label + '"]');
  }

  function resetSides() {
    turns = { A: [], B: [] };
    voted = false;
    voteButtons.forEach((b) => b.classList.remove("chosen"));
    labels.forEach((label) => {
      conversation(label).replaceChildren();
      document.querySelector('[data-name="' + label + '"]').textContent = "";
      document.querySelector('[data-side="' + label + '"]').classList.remove("winner", "loser");
    });
  }

  function bubbleFor(label, turn, prompt) {
    const list = turns[label];
    let entry = list.find((t) => t.turn === turn);
    if (!entry) {
      const box = conversation(label);
      const question = document.createElement("div");
      question.className = "bubble user";
      question.textContent = prompt || "";
      const answer = document.createElement("div");
      answer.className = "bubble model streaming";
      const body = document.createElement("div");
      body.className = "markdown";
      const caret = document.createElement("span");
      caret.className = "caret";
      answer.append(body, caret);
      box.append(question, answer);
      entry = { turn, attempt: 0, status: "queued", text: "", el: answer, body };
      list.push(entry);
    }
    return entry;
  }

  function setTurn(label, t) {
    const entry = bubbleFor(label, t.turn, t.prompt);
    entry.attempt = t.attempt;
    entry.status = t.status;
    entry.text = t.text || "";
    renderEntry(label, entry, t.html, t.error);
  }

  function renderEntry(label, entry, html, error) {
    entry.el.classList.toggle("streaming", entry.status === "queued" || entry.status === "running");
    entry.el.classList.toggle("failed", entry.status === "failed");
    const old = entry.el.querySelector(".retry");
    if (old) old.remove();
    if (entry.status === "done") {
      entry.body.innerHTML = html || ""; // sanitised on the server (markdown-it without raw HTML, then nh3)
    } else if (entry.status === "failed") {
      entry.body.textContent = error || "This side failed to answer.";
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = "↻ Retry";
      retry.addEventListener("click", () => send({ type: "regenerate", side: label }));
      entry.el.appendChild(retry);
    } else {
      entry.body.textContent = entry.text;
    }
    update();
  }

  function lastTurns() {
    return labels.map((l) => turns[l][turns[l].length - 1]).filter(Boolean);
  }

  function update() {
    const last = lastTurns();
    const busy = last.length > 0 && last.some((t) => t.status === "queued" || t.status === "running");
    const allDone = last.length === labels.length && last.every((t) => t.status === "done");
    const anyFailed = last.some((t) => t.status === "failed");
    const online = socket && socket.readyState === WebSocket.OPEN;
    voteButtons.forEach((b) => (b.disabled = !(allDone && !voted && battleId && online)));
    const votebar = document.getElementById("votebar");
    if (votebar) votebar.classList.toggle("open", allDone && !voted);
    regenerateButton.disabled = !(battleId && !voted && !busy && (allDone || anyFailed));
    const turnCount = last.length ? last[0].turn + 1 : 0;
    const full = turnCount >= config.maxTurns;
    sendButton.disabled = starting || busy || !online || (battleId && !voted && (full || anyFailed));
    sendButton.textContent = battleId && !voted ? "Continue" : "Send";
    counter.textContent = battleId ? "Turn " + turnCount + " of " + config.maxTurns : "";
    labels.forEach((label) => {
      const t = turns[label][turns[label].length - 1];
      const status = document.querySelector('[data-status="' + label + '"]');
      status.textContent = !t ? "" : t.status === "done" ? "✓ done" : t.status === "failed" ? "failed" : "writing…";
      status.className = "status " + (t ? t.status : "");
    });
    if (allDone && !voted && mode !== "direct" && battleId) say("Both answers are in. Which is better? Vote with the buttons or keys 1–4, or ask a follow-up.");
  }

  function showNames(models) {
    if (!models) return;
    labels.forEach((label) => {
      document.querySelector('[data-name="' + label + '"]').textContent = models[label] || "";
    });
  }

  function applyState(state) {
    battleId = state.battle;
    resetSides();
    labels.forEach((label) => (state.sides[label] || []).forEach((t) => setTurn(label, t)));
    voted = !!state.voted;
    showNames(state.models);
    update();
  }

  function handle(frame) {
    switch (frame.type) {
      case "started":
        starting = false;
        applyState(frame);
        say(mode === "direct" ? "" : "The two models are answering…");
        break;
      case "state":
        applyState(frame);
        break;
      case "token": {
        const entry = turns[frame.side] && turns[frame.side].find((t) => t.turn === frame.turn);
        if (!entry || frame.attempt !== entry.attempt || entry.status === "done" || entry.status === "failed") return;
        entry.status = "running";
        entry.text += frame.text;
        entry.body.textContent = entry.text; // text, never HTML, while it streams
        entry.el.classList.add("streaming");
        update();
        break;
      }
      case "turn": {
        if (!turns[frame.side]) return;
        const entry = bubbleFor(frame.side, frame.turn, "");
        if (frame.attempt < entry.attempt) return;
        entry.attempt = frame.attempt;
        entry.status = frame.status;
        entry.text = frame.text;
        renderEntry(frame.side, entry, frame.html, frame.error);
        break;
      }
      case "voted":
        voted = true;
        showNames(frame.models);
        voteButtons.forEach((b) => b.classList.toggle("chosen", b.dataset.vote === frame.choice));
        if (frame.choice === "A" || frame.choice === "B") {
          document.querySelector('[data-side="' + frame.choice + '"]').classList.add("winner");
        }
        say("Thanks for voting! Start a new round with another prompt.", "success");
        update();
        break;
      case "error":
        starting = false;
        say(frame.message, "error");
        // Re-read the battle so the page shows what the server holds, not what this page hoped for.
        if (battleId && frame.code !== "not_found") send({ type: "resume", battle: battleId });
        update();
        break;
    }
  }

  function vote(choice) {
    if (voteButtons.length === 0 || voteButtons[0].disabled) return;
    send({ type: "vote", choice });
  }

  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const prompt = promptBox.value.trim();
    if (!prompt) return;
    if (prompt.length > config.maxPromptChars) {
      say("The prompt is " + prompt.length + " characters long; the limit is " + config.maxPromptChars + ".", "error");
      return;
    }
    let ok;
    if (battleId && !voted) {
      ok = send({ type: "continue", prompt });
      if (ok) labels.forEach((label) => bubbleFor(label, turns[label].length, prompt));
    } else {
      const message = { type: "start", mode, prompt };
      if (mode !== "anonymous") message.models = labels.map((l) => document.getElementById("pick-" + l).value);
      ok = send(message);
      if (ok) {
        starting = true;
        battleId = null;
        resetSides();
      }
    }
    if (ok) {
      promptBox.value = "";
      say("");
    }
    update();
  });

  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("#composer").requestSubmit();
    }
  });

  regenerateButton.addEventListener("click", () => send({ type: "regenerate" }));
  $("#new-round").addEventListener("click", () => {
    battleId = null;
    resetSides();
    say("");
    promptBox.focus();
    update();
  });
  voteButtons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.vote)));
  document.addEventListener("keydown", (e) => {
    if (e.target === promptBox || e.ctrlKey || e.metaKey || e.altKey) return;
    const choice = { "1": "A", "2": "tie", "3": "bothbad", "4": "B" }[e.key];
    if (choice) vote(choice);
  });

  fillPickers();
  connect();
})();
