// The tester is a form of its own, so that Enter in its fields runs Check. It still judges what is
// ticked in the dialog right now: before it is sent, copy the checkboxes into its hidden mirrors.
// Without JavaScript the mirrors carry the draft's flags, as saved by the dialog's last button.
(function () {
  "use strict";
  const tester = document.getElementById("tester-form");
  const dialog = document.getElementById("restrictions-form");
  if (!tester || !dialog) return;
  tester.addEventListener("submit", function () {
    tester.querySelectorAll("input[data-mirror]").forEach(function (mirror) {
      const box = dialog.elements.namedItem(mirror.name);
      if (box) mirror.disabled = !box.checked;
    });
  });
})();
