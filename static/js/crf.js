// CRF page helpers that need no server round trip. Branching and scores are evaluated on the
// server (htmx), never here.
//
// VAS: the number input holds the answer; the range slider beside it only helps to set it.
// An untouched slider shows no thumb position as an answer: its number input stays empty.
document.addEventListener("input", (event) => {
  const input = event.target;
  if (input.dataset && input.dataset.edcSliderFor) {
    const target = document.getElementById(input.dataset.edcSliderFor);
    // The slider's own change event reaches the form, which then re-evaluates on the server.
    if (target) target.value = input.value;
  } else if (input.dataset && input.dataset.edcSlider) {
    const slider = document.querySelector(`[data-edc-slider-for="${input.id}"]`);
    if (slider && input.value !== "") slider.value = input.value;
  }
});
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});
