// Ask before a button with data-confirm does its job, in the page's native <dialog id="confirm-dialog">.
// Without JavaScript (or <dialog>) the button works as before; what it does stays undoable there.
(function () {
  "use strict";
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") return;
  const message = dialog.querySelector("[data-confirm-message]");
  const yes = dialog.querySelector("button[value=yes]");
  let pending = null;

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-confirm]");
    if (!button || !button.form) return;
    event.preventDefault();
    pending = button;
    message.textContent = button.dataset.confirm;
    yes.textContent = button.dataset.confirmYes || button.textContent.trim();
    dialog.returnValue = "";
    dialog.showModal();
    yes.focus();
  });

  dialog.addEventListener("close", function () {
    const button = pending;
    pending = null;
    if (button && dialog.returnValue === "yes") button.form.requestSubmit(button);
    else if (button) button.focus();
  });
})();
