// The first-visit notice: prompts and votes are collected and may be published. Shown until the visitor agrees;
// the battle page sends no prompt before that (window.arenaConsent.given()).
(function () {
  "use strict";
  const KEY = "arena-consent";
  const box = document.getElementById("consent");
  function given() {
    try { return localStorage.getItem(KEY) === "1"; } catch (e) { return box.dataset.agreed === "1"; }
  }
  function show() {
    box.hidden = false;
    document.getElementById("consent-agree").focus();
  }
  document.getElementById("consent-agree").addEventListener("click", () => {
    try { localStorage.setItem(KEY, "1"); } catch (e) { /* storage refused: agreed for this page only */ }
    box.dataset.agreed = "1";
    box.hidden = true;
    const notice = document.getElementById("notice");
    if (notice && notice.classList.contains("error") && notice.textContent.startsWith("Please read the notice")) {
      notice.textContent = "";
      notice.className = "notice";
    }
    const prompt = document.getElementById("prompt");
    if (prompt) prompt.focus();
  });
  if (!given()) box.hidden = false;
  window.arenaConsent = { given, show };
})();
