// Drafts of CRF pages kept in this browser tab (sessionStorage) until their save succeeds; see
// static/js/crf.js for how a page keeps and restores its draft, docs/architecture.md for why.
// This file runs on every page and only ever forgets drafts:
//  - the draft of a page just saved (the server sets the edc_draft_saved cookie on a successful save);
//  - drafts of another user (a shared ward computer: the next person never gets the last one's answers);
//  - every draft on an explicit logout.
(() => {
  const PREFIX = "edc-draft:";
  let store;
  try { store = window.sessionStorage; } catch (error) { return; }
  const keys = () => Object.keys(store).filter((key) => key.startsWith(PREFIX));

  const saved = document.cookie.split("; ").find((c) => c.startsWith("edc_draft_saved="));
  if (saved) {
    const path = decodeURIComponent(saved.slice("edc_draft_saved=".length).replace(/^"|"$/g, ""));
    keys().filter((key) => key.endsWith(":" + path)).forEach((key) => store.removeItem(key));
    document.cookie = "edc_draft_saved=; Max-Age=0; Path=/; SameSite=Lax";
  }
  const user = document.body.dataset.edcUser;
  if (user) keys().filter((key) => !key.startsWith(`${PREFIX}${user}:`)).forEach((key) => store.removeItem(key));
  document.addEventListener("submit", (event) => {
    if (event.target.matches("form[data-edc-logout]")) keys().forEach((key) => store.removeItem(key));
  });
})();
