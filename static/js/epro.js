// The participant's questionnaire (trials.epro). The VAS line is a pointer aid: touching it writes the
// number input (the answer); until then nothing is marked and nothing is posted.
(function () {
  "use strict";
  document.querySelectorAll(".progress-bar[data-percent]").forEach(function (bar) {
    bar.style.width = bar.dataset.percent + "%";
  });
  document.querySelectorAll(".epro-vas").forEach(function (vas) {
    var line = vas.querySelector(".epro-vas-line");
    var mark = vas.querySelector(".epro-vas-mark");
    var input = document.getElementById(vas.dataset.for);
    var unset = document.querySelector('[data-vas-unset="' + vas.dataset.for + '"]');
    var min = Number(vas.dataset.min), max = Number(vas.dataset.max);
    function show(value) {
      if (value === "" || isNaN(Number(value))) { mark.hidden = true; if (unset) unset.hidden = false; return; }
      var v = Math.min(max, Math.max(min, Number(value)));
      mark.style.left = ((v - min) / (max - min) * 100) + "%";
      mark.hidden = false;
      if (unset) unset.hidden = true;
    }
    function take(event) {
      var box = line.getBoundingClientRect();
      var ratio = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      input.value = Math.round(min + ratio * (max - min));
      show(input.value);
    }
    var pressed = false;
    line.addEventListener("pointerdown", function (event) { pressed = true; line.setPointerCapture(event.pointerId); take(event); });
    line.addEventListener("pointermove", function (event) { if (pressed) take(event); });
    line.addEventListener("pointerup", function () { pressed = false; });
    line.addEventListener("pointercancel", function () { pressed = false; });
    input.addEventListener("input", function () { show(input.value); });
    show(input.value);
  });
})();
