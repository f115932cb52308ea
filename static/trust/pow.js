// The arena's bot check: find a nonce such that SHA-256("<challenge>:<nonce>") starts with `bits` zero bits,
// and post it (trust/pow.py checks it). It starts when the page loads. A proof lasts a while (the server says
// how long): a prompt sent while there is no fresh proof waits here, the check runs (again), and the prompt is
// sent on once it is done, so an expired proof is renewed without the voter doing anything.
(function () {
  "use strict";
  const BATCH = 512;          // digests awaited together: the fastest batch in Chromium (larger ones are slower)
  const MARGIN_MS = 60_000;   // renew this long before the server's expiry (at most a tenth of the proof's life)
  const notice = document.getElementById("notice");
  let freshUntil = 0;         // performance.now() before which the proof counts
  let running = null;         // the check in progress
  let failed = null;
  let resending = false;      // the held prompt, sent on by this script after its check

  function zeroBits(bytes, bits) {
    let i = 0;
    for (; bits >= 8; bits -= 8, i++) if (bytes[i] !== 0) return false;
    return bits === 0 || (bytes[i] >> (8 - bits)) === 0;
  }

  async function solve(challenge, bits) {
    const encoder = new TextEncoder();
    for (let start = 0; ; start += BATCH) {
      const tries = [];
      for (let n = start; n < start + BATCH; n++) {
        tries.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge + ":" + n)));
      }
      const digests = await Promise.all(tries);
      for (let k = 0; k < digests.length; k++) {
        if (zeroBits(new Uint8Array(digests[k]), bits)) return String(start + k);
      }
    }
  }

  function freshFor(seconds) {
    freshUntil = typeof seconds === "number"
      ? performance.now() + seconds * 1000 - Math.min(MARGIN_MS, seconds * 100) : Infinity;
  }

  async function prove() {
    const asked = await fetch("/trust/proof/", { credentials: "same-origin", cache: "no-store" });
    const task = await asked.json();
    if (!asked.ok) throw new Error(task.message || "The bot check could not start. Reload the page.");
    if (!task.required) { freshFor(task.expires_in); return; }
    if (!(window.crypto && crypto.subtle)) {
      throw new Error("This browser cannot run the arena's bot check here (it needs HTTPS). Open the arena over https://.");
    }
    const nonce = await solve(task.challenge, task.bits);
    const answered = await fetch("/trust/proof/", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ nonce }),
    });
    const result = await answered.json();
    if (!answered.ok) throw new Error(result.message || "The bot check failed. Reload the page.");
    freshFor(result.expires_in);
  }

  function check() {
    if (!running) {
      failed = null;
      running = prove().catch((error) => { failed = error.message; }).finally(() => { running = null; });
    }
    return running;
  }

  function show(text, error) {
    if (notice) { notice.textContent = text; notice.className = error ? "notice error" : "notice"; }
  }

  check();

  // Capture phase on the document runs before the battle page's own submit handler.
  document.addEventListener("submit", (event) => {
    if (!event.target || event.target.id !== "composer") return;
    if (resending || (!running && !failed && performance.now() < freshUntil)) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const form = event.target;
    show("One moment: a quick check that this is a browser…", false);
    // A failed check is tried again on the next prompt (a rate limit passes, a reloaded session works).
    (running || check()).then(() => {
      if (failed) show(failed, true);
      else {
        show("", false);
        resending = true;
        try { form.requestSubmit(); } finally { resending = false; }
      }
    });
  }, true);
})();
