// The battle page: one websocket, sides A and B, votes and the reveal. Model text is inserted as text while it
// streams and replaced by the server's sanitised markdown once a side finishes; nothing here builds HTML from
// model output. The current battle's id is kept in sessionStorage, so a reload in the same tab resumes it.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("arena-config").textContent);
  const mode = config.mode;
  const labels = mode === "direct" ? ["A"] : ["A", "B"];
  const $ = (sel) => document.querySelector(sel);
  const notice = $("#notice");
  const promptBox = $("#prompt");
  const promptCount = $("#prompt-count");
  const sendButton = $("#send");
  const stopButton = $("#stop");
  const showAllButton = $("#show-all"); // anonymous battles at equal pace only
  const regenerateButton = $("#regenerate");
  const shareLink = $("#share");
  const counter = $("#counter");
  const voteButtons = Array.from(document.querySelectorAll(".vote"));
  const STORE_KEY = "arena-battle-" + mode;
  const CHOICE_BUTTON = { left: "A", right: "B", tie: "tie", bothbad: "bothbad" }; // stored vote -> button

  let socket = null;
  let battleId = null;
  let voted = null; // the chosen button ("A", "B", "tie", "bothbad") once the battle is voted on
  let voting = false; // a vote is on its way: no second one
  let starting = false;
  let stopping = false;
  let resuming = false;
  let problem = ""; // the last error the server sent, shown until the voter acts again
  let turns = { A: [], B: [] }; // per side: [{turn, attempt, status, text, el, body}]

  function say(message, kind) {
    notice.textContent = message || "";
    notice.className = "notice" + (kind ? " " + kind : "");
  }

  function remember(id) {
    battleId = id;
    try {
      if (id) sessionStorage.setItem(STORE_KEY, id);
      else sessionStorage.removeItem(STORE_KEY);
    } catch (e) { /* storage refused (private mode): the battle just does not survive a reload */ }
  }

  function remembered() {
    try { return sessionStorage.getItem(STORE_KEY); } catch (e) { return null; }
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

  // A socket the server closes with 4503 (try again later: its database is unreachable) said why in an error
  // frame just before; the page keeps that message up and reconnects, waiting longer each time the server is
  // still away. Any other close reconnects after RECONNECT_MS.
  const TRY_AGAIN_LATER = 4503;
  const RECONNECT_MS = 1500;
  const RECONNECT_MAX_MS = 15000;
  let reconnectMs = RECONNECT_MS;
  let away = false; // the last socket closed with TRY_AGAIN_LATER

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + location.host + "/ws/battle/");
    socket.addEventListener("open", () => {
      if (problem.startsWith("Connection lost") || away) {
        problem = "";
        say("");
      }
      away = false;
      if (battleId) {
        resuming = true;
        socket.send(JSON.stringify({ type: "resume", battle: battleId }));
      }
      update();
    });
    socket.addEventListener("message", (e) => handle(JSON.parse(e.data)));
    socket.addEventListener("close", (e) => {
      voting = false;
      away = e.code === TRY_AGAIN_LATER;
      reconnectMs = away ? Math.min(reconnectMs * 2, RECONNECT_MAX_MS) : RECONNECT_MS;
      if (!problem) {
        problem = away ? "The arena is briefly unavailable. Reconnecting…" : "Connection lost. Reconnecting…";
        say(problem, "error");
      }
      update();
      setTimeout(connect, reconnectMs);
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
    voted = null;
    voting = false;
    stopping = false;
    voteButtons.forEach((b) => b.classList.remove("chosen"));
    reasonsHide();
    labels.forEach((label) => {
      conversation(label).replaceChildren();
      document.querySelector('[data-name="' + label + '"]').textContent = "";
      document.querySelector('[data-side="' + label + '"]').classList.remove("winner", "loser");
    });
  }

  function copyText(text, button) {
    const done = () => {
      button.textContent = "✓ Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text) && done());
    } else if (fallbackCopy(text)) {
      done();
    }
  }

  function fallbackCopy(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
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
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy";
      copy.textContent = "Copy";
      copy.title = "Copy this answer";
      answer.append(copy, body, caret);
      box.append(question, answer);
      // `end`: where in the answer what this page holds ends (the token frames say where each piece starts).
      entry = { turn, attempt: 0, status: "queued", text: "", end: 0, el: answer, body, cut: false, stopped: false };
      copy.addEventListener("click", () => copyText(entry.text, copy));
      list.push(entry);
    }
    return entry;
  }

  function setTurn(label, t) {
    const entry = bubbleFor(label, t.turn, t.prompt);
    entry.attempt = t.attempt;
    entry.status = t.status;
    // A turn still being written when the page (re)joins holds the start the server saved (about a second
    // behind); the token frames that follow carry their offset and continue it.
    entry.text = t.text || "";
    entry.end = entry.text.length;
    entry.cut = !!t.cut;
    entry.stopped = !!t.stopped;
    renderEntry(label, entry, t.html, t.error);
  }

  function renderEntry(label, entry, html, error) {
    entry.el.classList.toggle("streaming", entry.status === "queued" || entry.status === "running");
    entry.el.classList.toggle("failed", entry.status === "failed");
    entry.el.querySelectorAll(".retry, .cut-mark").forEach((el) => el.remove());
    if (entry.status === "done") {
      entry.body.innerHTML = html || ""; // sanitised on the server (markdown-it without raw HTML, then nh3)
      const mark = entry.cut ? "✂ Cut off at the model's token limit." : entry.stopped ? "■ Stopped." : "";
      if (mark) {
        const p = document.createElement("p");
        p.className = "cut-mark";
        p.textContent = mark;
        entry.el.appendChild(p);
      }
    } else if (entry.status === "failed") {
      entry.body.textContent = error || "This side failed to answer.";
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = "↻ Retry this side";
      retry.addEventListener("click", () => {
        problem = "";
        send({ type: "regenerate", side: label });
      });
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
    const failed = labels.filter((l) => {
      const t = turns[l][turns[l].length - 1];
      return t && t.status === "failed";
    });
    const online = socket && socket.readyState === WebSocket.OPEN;
    voteButtons.forEach((b) => (b.disabled = !(allDone && !voted && !voting && battleId && online)));
    const votebar = document.getElementById("votebar");
    if (votebar) votebar.classList.toggle("open", allDone && !voted);
    regenerateButton.disabled = !(battleId && !voted && !busy && (allDone || failed.length));
    stopButton.hidden = !busy;
    stopButton.disabled = !busy || stopping || !online;
    updateShowAll(busy, online);
    const turnCount = last.length ? last[0].turn + 1 : 0;
    const full = turnCount >= config.maxTurns;
    // A failed side leaves two ways on: retry it, or send a prompt that starts a new round.
    const continuing = battleId && !voted && !failed.length;
    sendButton.disabled = starting || busy || !online || (continuing && full);
    sendButton.textContent = continuing ? "Continue" : "Send";
    counter.textContent = battleId ? "Turn " + turnCount + " of " + config.maxTurns : "";
    labels.forEach((label) => {
      const t = turns[label][turns[label].length - 1];
      const status = document.querySelector('[data-status="' + label + '"]');
      status.textContent = !t ? "" : t.status === "done" ? "✓ done" : t.status === "failed" ? "failed" : "writing…";
      status.className = "status " + (t ? t.status : "");
    });
    if (shareLink) {
      shareLink.hidden = !(voted && battleId);
      if (voted && battleId) shareLink.href = "/battle/" + encodeURIComponent(battleId) + "/";
    }
    if (problem || !battleId) return;
    if (voted) {
      say("Thanks for voting! Start a new round with another prompt.", "success");
    } else if (failed.length && !busy) {
      const who = labels.length === 1 ? "The model" : failed.map((l) => "Model " + l).join(" and ");
      say(who + " could not answer, so this round cannot be voted on. Press “↻ Retry this side” to ask again, " +
        "or send a prompt to start a new round.", "error");
    } else if (allDone && mode !== "direct") {
      // The keys are offered where they are shown: on a phone the buttons carry no key hints.
      const how = window.matchMedia("(max-width: 760px)").matches ? "Vote with the buttons" : "Vote with the buttons or keys 1–4";
      say("Both answers are in. Which is better? " + how + (full ? "." : ", or ask a follow-up."));
    } else if (busy && mode !== "direct") {
      say(stopping ? "Stopping…" : "The two models are answering…");
    } else if (!busy) {
      say("");
    }
  }

  function showNames(models) {
    if (!models) return;
    labels.forEach((label) => {
      document.querySelector('[data-name="' + label + '"]').textContent = models[label] || "";
    });
  }

  function showVote(choice, models) {
    voted = choice;
    voting = false;
    showNames(models);
    voteButtons.forEach((b) => b.classList.toggle("chosen", b.dataset.vote === choice));
    labels.forEach((label) => {
      document.querySelector('[data-side="' + label + '"]').classList.toggle("winner", choice === label);
    });
    reasonsShow();
    update();
  }

  function applyState(state) {
    remember(state.battle);
    resetSides();
    labels.forEach((label) => (state.sides[label] || []).forEach((t) => setTurn(label, t)));
    showNames(state.models);
    if (state.voted) showVote(CHOICE_BUTTON[state.voted], state.models);
    update();
  }

  function handle(frame) {
    switch (frame.type) {
      case "started":
        starting = false;
        applyState(frame);
        break;
      case "state":
        resuming = false;
        applyState(frame);
        break;
      case "token": {
        const entry = turns[frame.side] && turns[frame.side].find((t) => t.turn === frame.turn);
        if (!entry || frame.attempt !== entry.attempt || entry.status === "done" || entry.status === "failed") return;
        const offset = typeof frame.offset === "number" ? frame.offset : entry.end;
        if (offset + frame.text.length <= entry.end) return; // already in the start this page read
        // A piece that starts past what the page holds follows a gap (frames sent before the page joined):
        // marked with an ellipsis until the finished answer replaces it all.
        entry.text += offset > entry.end ? " … " + frame.text : frame.text.slice(entry.end - offset);
        entry.end = offset + frame.text.length;
        entry.status = "running";
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
        entry.end = entry.text.length;
        entry.cut = !!frame.cut;
        entry.stopped = !!frame.stopped;
        if (!lastTurns().some((t) => t.status === "queued" || t.status === "running")) stopping = false;
        renderEntry(frame.side, entry, frame.html, frame.error);
        break;
      }
      case "voted":
        showVote(frame.choice, frame.models);
        break;
      case "reasons":
        reasonsSaved(frame);
        break;
      case "error":
        starting = false;
        voting = false;
        if (frame.code === "not_found" && resuming) {
          // The remembered battle is gone (another session, or cleaned up): start afresh, quietly.
          resuming = false;
          remember(null);
          resetSides();
          update();
          return;
        }
        const answeredResume = resuming;
        resuming = false;
        // A second vote (a double click, a retried frame) is answered already_voted: the battle state that
        // follows shows the vote that counted, so there is nothing to warn about.
        if (frame.code !== "already_voted") {
          problem = frame.message;
          say(frame.message, "error");
        }
        // Re-read the battle so the page shows what the server holds, not what this page hoped for (once: a
        // refused re-read is not asked again, or a server that is briefly away would be asked in a tight loop).
        if (battleId && frame.code !== "not_found" && !answeredResume && send({ type: "resume", battle: battleId })) {
          resuming = true;
        }
        update();
        break;
    }
  }

  function vote(choice) {
    if (voteButtons.length === 0 || voteButtons[0].disabled || voting || voted) return;
    problem = "";
    if (send({ type: "vote", choice })) voting = true;
    update();
  }

  // Reasons with the vote: after the vote only, optional tags for each answer, sent once and replaceable. Built
  // here (not in the page) so that nothing of it is there before the vote.
  function reasonsHide() {
    const panel = document.getElementById("reasons");
    if (panel) panel.remove();
  }

  function reasonsShow() {
    const tags = config.reasonTags || {};
    const votebar = document.getElementById("votebar");
    if (!votebar || document.getElementById("reasons") || !Object.keys(tags).length) return;
    const panel = document.createElement("section");
    panel.id = "reasons";
    panel.className = "reasons";
    panel.setAttribute("aria-label", "Why? (optional)");
    const title = document.createElement("p");
    title.className = "reasons-title";
    title.textContent = "Why? Optional: tag what you saw in each answer.";
    panel.append(title);
    labels.forEach((label) => {
      const row = document.createElement("div");
      row.className = "reasons-side";
      row.dataset.reasonsSide = label;
      const name = document.createElement("span");
      name.className = "reasons-label";
      name.textContent = "Answer " + label;
      row.append(name);
      Object.entries(tags).forEach(([tag, text]) => {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.className = "reason";
        chip.dataset.reason = tag;
        chip.setAttribute("aria-pressed", "false");
        chip.textContent = text;
        chip.addEventListener("click", () => {
          chip.setAttribute("aria-pressed", chip.getAttribute("aria-pressed") === "true" ? "false" : "true");
          status.textContent = "";
        });
        row.append(chip);
      });
      panel.append(row);
    });
    const sendReasons = document.createElement("button");
    sendReasons.type = "button";
    sendReasons.id = "reasons-send";
    sendReasons.textContent = "Send reasons";
    const status = document.createElement("span");
    status.className = "reasons-status";
    status.id = "reasons-status";
    status.setAttribute("role", "status");
    sendReasons.addEventListener("click", () => {
      const message = { type: "reasons" };
      labels.forEach((label) => {
        message[label] = Array.from(panel.querySelectorAll('[data-reasons-side="' + label + '"] .reason[aria-pressed="true"]'))
          .map((chip) => chip.dataset.reason);
      });
      if (send(message)) status.textContent = "Sending…";
    });
    panel.append(sendReasons, status);
    votebar.after(panel);
  }

  function reasonsSaved(frame) {
    const panel = document.getElementById("reasons");
    if (!panel) return;
    labels.forEach((label) => {
      const chosen = new Set(frame[label] || []);
      panel.querySelectorAll('[data-reasons-side="' + label + '"] .reason').forEach((chip) => {
        chip.setAttribute("aria-pressed", chosen.has(chip.dataset.reason) ? "true" : "false");
      });
    });
    document.getElementById("reasons-status").textContent = "Thanks, your reasons are saved. You can change them and send again.";
  }

  function consented() {
    return !window.arenaConsent || window.arenaConsent.given();
  }

  function showPromptLength() {
    const length = promptBox.value.trim().length;
    const over = length > config.maxPromptChars;
    promptCount.hidden = length < config.maxPromptChars * 0.8;
    promptCount.textContent = length.toLocaleString("en") + " / " + config.maxPromptChars.toLocaleString("en");
    promptCount.classList.toggle("over", over);
  }

  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    problem = "";
    if (!consented()) {
      window.arenaConsent.show();
      say("Please read the notice above and accept it before your first prompt.", "error");
      problem = notice.textContent;
      return;
    }
    const prompt = promptBox.value.trim();
    if (!prompt) {
      problem = "The prompt is empty or only spaces: type a question or a task first.";
      say(problem, "error");
      promptBox.focus();
      return;
    }
    if (prompt.length > config.maxPromptChars) {
      problem = "The prompt is " + prompt.length.toLocaleString("en") + " characters long; the limit is " +
        config.maxPromptChars.toLocaleString("en") + ". Shorten it and send again.";
      say(problem, "error");
      return;
    }
    const failed = lastTurns().some((t) => t.status === "failed");
    let ok;
    if (battleId && !voted && !failed) {
      ok = send({ type: "continue", prompt });
      if (ok) labels.forEach((label) => bubbleFor(label, turns[label].length, prompt));
    } else {
      const message = { type: "start", mode, prompt };
      if (mode !== "anonymous") message.models = labels.map((l) => document.getElementById("pick-" + l).value);
      ok = send(message);
      if (ok) {
        starting = true;
        remember(null);
        resetSides();
      }
    }
    if (ok) {
      promptBox.value = "";
      showPromptLength();
      say(mode === "direct" ? "" : "The two models are answering…");
      // Out of the box, so that the keys 1–4 on the vote buttons vote instead of typing; a click brings it back.
      promptBox.blur();
    }
    update();
  });

  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  promptBox.addEventListener("input", showPromptLength);

  // Equal pace: the server sends both answers at one common pace (arena/pacing.py). "Show all now" lifts the
  // reading pace for the turn being written; both answers still end together.
  let showingAll = false;

  function updateShowAll(busy, online) {
    if (!showAllButton) return;
    if (!busy) showingAll = false;
    showAllButton.hidden = !(config.paced && busy);
    showAllButton.disabled = showingAll || !online;
  }

  if (showAllButton) {
    showAllButton.addEventListener("click", () => {
      if (send({ type: "show_all" })) showingAll = true;
      update();
    });
  }

  stopButton.addEventListener("click", () => {
    if (send({ type: "stop" })) stopping = true;
    update();
  });
  regenerateButton.addEventListener("click", () => {
    problem = "";
    send({ type: "regenerate" });
  });
  $("#new-round").addEventListener("click", () => {
    problem = "";
    remember(null);
    resetSides();
    say("");
    promptBox.focus();
    update();
  });
  voteButtons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.vote)));
  document.addEventListener("keydown", (e) => {
    const typing = e.target instanceof HTMLElement && e.target.matches("textarea, input, select, [contenteditable]");
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const choice = { "1": "A", "2": "tie", "3": "bothbad", "4": "B" }[e.key];
    if (choice) vote(choice);
  });

  fillPickers();
  battleId = remembered();
  connect();
})();
