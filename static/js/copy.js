// Copy buttons next to once-shown secrets. The Clipboard API needs a secure context (HTTPS or
// localhost) and permission; where it fails, the text is selected so that Ctrl-C copies it.
(function () {
  "use strict";
  function say(button, text) {
    var status = button.parentNode.querySelector(".copy-status");
    if (status) {
      status.textContent = text;
    }
  }
  function select(field) {
    field.focus();
    field.select();
    field.setSelectionRange(0, field.value.length);
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var fallback = function () {
        select(field);
        say(button, "Selected: press Ctrl-C (⌘-C) to copy.");
      };
      if (!navigator.clipboard || !window.isSecureContext) {
        fallback();
        return;
      }
      navigator.clipboard.writeText(field.value).then(function () {
        say(button, "Copied.");
      }, fallback);
    });
  });
})();
