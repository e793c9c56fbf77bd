// CRF page helpers that need no server round trip. Branching and scores are evaluated on the
// server (htmx), never here.
//
// VAS: the number input holds the answer (and is the keyboard's control); the line above it is a
// pointer aid. Until the answer has a value the line shows no thumb and "Not answered" is shown: a
// native range always has a value (its midpoint), so the line itself never stands for an answer.
function vasShow(number, line) {
  const answered = number.value !== "";
  if (line) {
    line.classList.toggle("edc-vas-unset", !answered);
    if (answered) line.value = number.value;
  }
  const state = document.querySelector(`[data-edc-vas-state-for="${number.id}"]`);
  if (state) state.hidden = answered;
}
document.addEventListener("input", (event) => {
  const input = event.target;
  if (input.dataset && input.dataset.edcSliderFor) {
    const number = document.getElementById(input.dataset.edcSliderFor);
    // The line's own change event reaches the form, which then re-evaluates on the server.
    if (number) { number.value = input.value; vasShow(number, input); }
  } else if (input.dataset && input.dataset.edcSlider) {
    vasShow(input, document.querySelector(`[data-edc-slider-for="${input.id}"]`));
  }
});
// A tap on the line where the (hidden) thumb already sits moves nothing, so the browser fires no
// input or change event: take the line's value as the answer on every release of a touch or click.
document.addEventListener("pointerup", (event) => {
  const line = event.target;
  if (!(line.dataset && line.dataset.edcSliderFor)) return;
  const number = document.getElementById(line.dataset.edcSliderFor);
  if (!number || number.value === line.value) return;
  number.value = line.value;
  vasShow(number, line);
  number.dispatchEvent(new Event("change", { bubbles: true }));
});
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});

// Rendered, and not inside a closed <details> ("Cannot answer?"), which getClientRects() counts.
function shown(e) {
  return e.checkVisibility ? e.checkVisibility() : e.getClientRects().length > 0;
}

// The error summary links to each item's wrapper (which works without JS, but leaves the focus on
// the page, not in the field). Following a link moves the focus to the item's first usable control
// (the checked radio of a group), so the answer can be corrected at once, by keyboard too.
function firstControl(item) {
  const usable = [...item.querySelectorAll("input, select, textarea")].filter(
    (e) => e.type !== "hidden" && e.tabIndex !== -1 && !e.disabled && shown(e),
  );
  const first = usable[0];
  if (first && first.type === "radio") return usable.find((e) => e.name === first.name && e.checked) || first;
  return first;
}
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("#error-summary a[href^='#item-']");
  const item = link && document.getElementById(link.getAttribute("href").slice(1));
  const control = item && firstControl(item);
  if (!control) return;
  event.preventDefault();
  item.scrollIntoView({ block: "center" });
  control.focus({ preventScroll: true });
});

// Live evaluation (htmx) re-renders the items whose visibility changed. When branching hides the
// item being answered, its field is removed under the cursor and the focus falls back to the page
// (keyboard users lose their place): move it on to the next control, where Tab would have gone.
// Only a focus that was lost is moved, never one the user has put elsewhere meanwhile.
function tabbable(root) {
  return [...root.querySelectorAll("a[href], button, input, select, textarea, summary, [tabindex]")].filter(
    (e) => e.tabIndex >= 0 && e.type !== "hidden" && !e.disabled && shown(e),
  );
}
let focusedItem = null;
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const old = event.detail.target;
  focusedItem = old && old.id && old.contains(document.activeElement) ? old.id : null;
});
document.addEventListener("htmx:oobAfterSwap", () => {
  const item = focusedItem && document.getElementById(focusedItem);
  focusedItem = null;
  if (!item || (document.activeElement && document.activeElement !== document.body)) return;
  const next = tabbable(document).find((e) => !item.contains(e) && item.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING);
  if (next) next.focus();
});

// Drafts: what is typed on a CRF page is kept in this tab (sessionStorage, keyed by user and page)
// until the save succeeds, so an expired session (the save lands on the login page, which brings the
// user back here) or a dropped connection loses nothing. Opening the page again with a draft kept
// posts it back to the server, which shows the page as typed with a notice and a discard button
// (branching, added rows and scores then come out as when it was typed). Never restored on the
// answer to a save (its messages would be lost): only on a page opened afresh. drafts.js forgets.
(() => {
  const form = document.querySelector("form.edc-crf[data-edc-draft]");
  if (!form) return;
  const key = form.dataset.edcDraft;
  let store;
  try { store = window.sessionStorage; } catch (error) { return; }
  let discarding = false;  // after Discard nothing is kept again (a change event fired on leaving the page)
  const keep = () => {
    if (discarding) return;
    const fields = [...new FormData(form)].filter(([name, value]) => name !== "csrfmiddlewaretoken" && typeof value === "string");
    try { store.setItem(key, JSON.stringify({ fields })); } catch (error) { /* storage full or off: nothing kept */ }
  };
  form.addEventListener("input", keep);
  form.addEventListener("change", keep);
  form.addEventListener("submit", keep);

  document.addEventListener("click", (event) => {
    const discard = event.target.closest && event.target.closest("[data-edc-draft-discard]");
    if (!discard) return;
    discarding = true;
    store.removeItem(key);
    window.location.replace(discard.dataset.href + "?discarded=1");
  });

  if (!("edcDraftOffer" in form.dataset)) return;
  if (new URLSearchParams(window.location.search).has("discarded")) {  // the page as stored, never a draft
    store.removeItem(key);
    return;
  }
  document.addEventListener("DOMContentLoaded", () => {
    let draft = null;
    try { draft = JSON.parse(store.getItem(key)); } catch (error) { store.removeItem(key); }
    if (!draft || !Array.isArray(draft.fields)) return;
    const restore = document.createElement("form");
    restore.method = "post";
    restore.action = window.location.pathname;
    restore.hidden = true;
    const add = (name, value) => {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      restore.appendChild(input);
    };
    add("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    draft.fields.filter(([name]) => name !== "action").forEach(([name, value]) => add(name, value));
    add("action", "restore_draft");
    document.body.appendChild(restore);
    restore.submit();
  });
})();

// A CRF with file items posts multipart; its live re-evaluations (htmx, on every change) leave the
// chosen files out: they are uploaded once, by the save, never on each change. Drafts keep only text.
document.addEventListener("htmx:configRequest", (event) => {
  const data = event.detail.formData;
  if (!data || !(event.detail.elt instanceof HTMLFormElement)) return;
  [...data.entries()].filter(([, value]) => value instanceof File).forEach(([name]) => data.delete(name));
});
