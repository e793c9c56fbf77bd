// Idle logoff warning (trials.accounts.middleware ends a session after SESSION_IDLE_MINUTES
// without a request). The body carries the seconds left (data-edc-idle-remaining); two minutes
// before, a banner offers "Stay logged in" (a keep-alive request). At the end the tab goes to the
// login page and back here after login: it does not submit the logout form, so the CRF draft the
// tab keeps (static/js/drafts.js) is offered again on the page.
(() => {
  const body = document.body;
  const total = Number(body.dataset.edcIdleRemaining);
  if (!body.dataset.edcUser || !Number.isFinite(total) || total <= 0) return;
  const WARN = Math.min(120, Math.floor(total / 4));
  let deadline;
  let warnTimer;
  let endTimer;
  let banner;

  const csrf = () => (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";
  const hide = () => { if (banner) { banner.remove(); banner = null; } };
  const show = () => {
    if (banner) return;
    banner = document.createElement("div");
    banner.className = "alert alert-warning d-flex align-items-center gap-3 position-fixed bottom-0 end-0 m-3 shadow";
    banner.setAttribute("role", "alert");
    banner.dataset.testid = "idle-warning";
    const text = document.createElement("span");
    text.textContent = body.dataset.edcIdleText || "You will be logged out soon for inactivity.";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-sm btn-primary";
    button.dataset.testid = "stay-logged-in";
    button.textContent = body.dataset.edcIdleStay || "Stay logged in";
    button.addEventListener("click", () => {
      fetch(body.dataset.edcKeepalive, { method: "POST", headers: { "X-CSRFToken": csrf() }, credentials: "same-origin" })
        .then((response) => { if (response.status === 204) { hide(); start(Number(body.dataset.edcIdleSeconds)); } else { end(); } })
        .catch(() => {});
    });
    banner.append(text, button);
    body.append(banner);
  };
  const end = () => {
    const next = window.location.pathname + window.location.search;
    window.location.assign(`${body.dataset.edcLogin}?next=${encodeURIComponent(next)}`);
  };
  const start = (seconds) => {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    deadline = Date.now() + seconds * 1000;
    warnTimer = setTimeout(show, Math.max(0, seconds - WARN) * 1000);
    endTimer = setTimeout(end, seconds * 1000 + 1000);
  };
  // A request the page makes in the background (htmx: a CRF's live checks) is activity too.
  document.addEventListener("htmx:afterRequest", () => { hide(); start(Number(body.dataset.edcIdleSeconds)); });
  start(total);
})();
