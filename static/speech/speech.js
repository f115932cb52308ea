// The voice battle page: start a battle over HTTP, poll its state, play both clips, vote, see the names.
// The vote buttons open once both clips have played to the end: the server takes a vote only after both clips were
// delivered in full and their duration has passed. The form is the page's "composer", so trust/pow.js holds a
// new session's first text until its proof of work is accepted.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("speech-config").textContent);
  const $ = (sel) => document.querySelector(sel);
  const labels = ["A", "B"];
  const form = $("#composer");
  const textBox = $("#speech-text");
  const speakButton = $("#speak");
  const notice = $("#notice");
  const voteButtons = Array.from(document.querySelectorAll(".vote"));
  const STATUS = { queued: "waiting…", running: "speaking…", done: "ready", failed: "failed" };

  let battle = null; // the last state from the server
  let played = { A: false, B: false };
  let polling = null;

  function say(message, kind) {
    notice.textContent = message || "";
    notice.className = "notice" + (kind ? " " + kind : "");
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function call(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : "The server could not answer (HTTP " + response.status + ").";
      throw new Error(message);
    }
    return data;
  }

  function votable() {
    return battle && !battle.voted && labels.every((l) => battle.sides[l] && battle.sides[l].status === "done" && played[l]);
  }

  function render() {
    labels.forEach((label) => {
      const side = battle ? battle.sides[label] : null;
      const status = document.querySelector(`[data-status="${label}"]`);
      const audio = document.querySelector(`[data-audio="${label}"]`);
      const placeholder = document.querySelector(`[data-placeholder="${label}"]`);
      const name = document.querySelector(`[data-name="${label}"]`);
      const figures = document.querySelector(`[data-figures="${label}"]`);
      status.textContent = side ? STATUS[side.status] || side.status : "";
      status.className = "status" + (side ? " " + side.status : "");
      if (side && side.audio && audio.getAttribute("src") !== side.audio) audio.setAttribute("src", side.audio);
      if (!side || !side.audio) audio.removeAttribute("src");
      placeholder.textContent = side && side.status === "failed" ? side.error : side ? "The voice is being synthesised…" : "The voice will appear here.";
      name.textContent = battle && battle.models ? battle.models[label] : "";
      const f = battle && battle.figures ? battle.figures[label] : null;
      figures.textContent = f ? `${f.audio_seconds.toFixed(1)} s of audio in ${f.generation_seconds.toFixed(2)} s` +
        (f.real_time_factor ? ` (${f.real_time_factor}× real time)` : "") : "";
      document.querySelector(`.speech-side[data-side="${label}"]`).classList.toggle("played", played[label]);
    });
    const open = votable();
    voteButtons.forEach((b) => { b.disabled = !open; });
    $("#votebar").classList.toggle("open", open);
    voteButtons.forEach((b) => b.classList.toggle("chosen", battle && battle.voted === b.dataset.vote));
    document.querySelectorAll(".speech-side").forEach((el) => {
      const won = battle && battle.voted && ((battle.voted === "left" && el.dataset.side === "A") || (battle.voted === "right" && el.dataset.side === "B"));
      el.classList.toggle("winner", Boolean(won));
    });
  }

  function settled() {
    return battle && labels.every((l) => ["done", "failed"].includes(battle.sides[l].status));
  }

  async function poll() {
    if (!battle) return;
    try {
      battle = await call("GET", `/speech/battles/${battle.battle}/`);
    } catch (e) {
      say(e.message, "error");
    }
    render();
    if (settled()) {
      clearInterval(polling);
      polling = null;
      if (labels.some((l) => battle.sides[l].status === "failed")) {
        say("A voice failed to speak, so this round cannot be voted on. Start a new round.", "error");
      } else if (!battle.voted) {
        say("Both voices are ready: play each one to the end, then vote.");
      }
    }
  }

  async function start(text) {
    speakButton.disabled = true;
    say("Synthesising both voices…");
    played = { A: false, B: false };
    try {
      battle = await call("POST", "/speech/battles/", { text });
    } catch (e) {
      say(e.message, "error");
      speakButton.disabled = false;
      return;
    }
    speakButton.disabled = false;
    render();
    if (polling) clearInterval(polling);
    polling = setInterval(poll, 500);
  }

  async function vote(choice) {
    if (!votable()) return;
    voteButtons.forEach((b) => { b.disabled = true; });
    try {
      battle = await call("POST", `/speech/battles/${battle.battle}/vote/`, { choice });
      say("Thanks for voting! The names are revealed above. Start a new round for another pair.");
    } catch (e) {
      say(e.message, "error");
    }
    render();
  }

  labels.forEach((label) => {
    const audio = document.querySelector(`[data-audio="${label}"]`);
    audio.addEventListener("ended", () => {
      if (!played[label]) { played[label] = true; render(); }
    });
  });

  config.examples.forEach((text) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.title = text;
    button.addEventListener("click", () => { textBox.value = text; form.requestSubmit(); });
    $("#examples").appendChild(button);
  });

  form.addEventListener("submit", (event) => { event.preventDefault(); start(textBox.value); });
  textBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  voteButtons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.vote)));
  $("#new-round").addEventListener("click", () => {
    battle = null; played = { A: false, B: false };
    if (polling) { clearInterval(polling); polling = null; }
    textBox.value = ""; say(""); render(); textBox.focus();
  });
  render();
})();
