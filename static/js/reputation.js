// While a blocklist check runs in the background, poll its status and reload the page when it ends.
// Without JavaScript the page says the check is running; reloading it shows the results.
(function () {
  "use strict";
  const box = document.getElementById("reputation-check");
  if (!box || box.dataset.running !== "true") return;
  const url = box.dataset.statusUrl;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (status) {
        if (status.running) window.setTimeout(poll, 1000);
        else window.location.reload();
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
