// The arena's bot check: before a new session's first battle, find a nonce such that
// SHA-256("<challenge>:<nonce>") starts with `bits` zero bits, and post it (trust/pow.py checks it).
// Until the answer is accepted, a submitted prompt waits here and is sent on once the check is done.
(function () {
  "use strict";
  const BATCH = 512;
  const notice = document.getElementById("notice");
  let proved = false;
  let failed = null;

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

  async function prove() {
    const asked = await fetch("/trust/proof/", { credentials: "same-origin" });
    const task = await asked.json();
    if (!asked.ok) throw new Error(task.message || "The bot check could not start. Reload the page.");
    if (!task.required) return;
    if (!(window.crypto && crypto.subtle)) {
      throw new Error("This browser cannot run the arena's bot check here (it needs HTTPS). Open the arena over https://.");
    }
    const nonce = await solve(task.challenge, task.bits);
    const answered = await fetch("/trust/proof/", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ nonce }),
    });
    if (!answered.ok) throw new Error((await answered.json()).message || "The bot check failed. Reload the page.");
  }

  const done = prove().then(
    () => { proved = true; },
    (error) => { failed = error.message; }
  );

  // Capture phase on the document runs before the battle page's own submit handler.
  document.addEventListener("submit", (event) => {
    if (proved || !event.target || event.target.id !== "composer") return;
    event.preventDefault();
    event.stopImmediatePropagation();
    if (failed) {
      if (notice) { notice.textContent = failed; notice.className = "notice error"; }
      return;
    }
    if (notice) { notice.textContent = "One moment: a quick check that this is a browser…"; notice.className = "notice"; }
    const form = event.target;
    done.then(() => {
      if (failed) {
        if (notice) { notice.textContent = failed; notice.className = "notice error"; }
      } else {
        form.requestSubmit();
      }
    });
  }, true);
})();
