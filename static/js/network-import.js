// Send the CSV file with a progress bar: a 10,000-line file takes a moment to upload and to check.
// Without JavaScript the form posts normally and the preview simply appears when it is ready.
(function () {
  "use strict";

  function bind(form) {
    if (!form || !window.FormData) return;
    const box = document.getElementById("import-progress");
    const bar = box.querySelector("progress");
    const label = box.querySelector(".progress-label");
    const button = form.querySelector("button[type=submit]");

    function show(text, percent) {
      box.hidden = false;
      label.textContent = text;
      if (percent === null) bar.removeAttribute("value"); // indeterminate while the server checks
      else bar.value = percent;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          show("Uploading… " + Math.round((100 * e.loaded) / e.total) + "%", (90 * e.loaded) / e.total);
        }
      });
      xhr.upload.addEventListener("load", function () {
        show("Checking every line…", null);
      });
      xhr.addEventListener("load", function () {
        if (xhr.status < 400) {
          show("Done.", 100);
          window.location.assign(xhr.responseURL); // the preview
          return;
        }
        // The form came back with errors (say, an unknown column): show it in place of this one.
        const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        document.querySelector("main").replaceWith(page.querySelector("main"));
        bind(document.getElementById("import-form"));
      });
      xhr.addEventListener("error", function () {
        show("The upload failed: check the connection and try again.", 0);
        button.disabled = false;
      });
      button.disabled = true;
      show("Uploading…", 0);
      xhr.send(new FormData(form));
    });
  }

  // Saving 10,000 lines takes a few seconds too: show that it is under way, and prevent a second click.
  function bindCommit(form) {
    if (!form) return;
    form.addEventListener("submit", function (event) {
      if (!event.submitter || event.submitter.value !== "import") return;
      const box = document.getElementById("import-progress");
      box.hidden = false;
      box.querySelector("progress").removeAttribute("value");
      box.querySelector(".progress-label").textContent = "Importing " + form.dataset.rows + " lines…";
      // A disabled button is not submitted, so the action travels in a hidden field instead.
      const action = document.createElement("input");
      action.type = "hidden";
      action.name = "action";
      action.value = "import";
      form.appendChild(action);
      form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    });
  }

  bind(document.getElementById("import-form"));
  bindCommit(document.getElementById("import-commit"));
})();
