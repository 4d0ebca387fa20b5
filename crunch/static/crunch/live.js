// Refresh the parts of a page marked data-live while it is open, without a reload.
// The server answers "?live=1" with just those parts; each replaces the element with
// the same id. Without JavaScript the pages simply show the figures of their load.
(function () {
  "use strict";
  var seconds = Number(document.body && document.body.dataset.refreshSeconds);
  if (!seconds || !window.fetch || !window.DOMParser) return;
  var status = document.querySelector("[data-live-status]");
  var busy = false;

  function liveUrl() {
    var url = new URL(window.location.href);
    url.hash = "";
    url.searchParams.set("live", "1");
    return url.toString();
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    fresh.querySelectorAll("[data-live][id]").forEach(function (node) {
      var old = document.getElementById(node.id);
      if (!old) return;
      // Keep open <details> open across refreshes.
      var open = {};
      old.querySelectorAll("details[open] > summary").forEach(function (s) { open[s.textContent] = true; });
      var copy = document.importNode(node, true);
      copy.querySelectorAll("details > summary").forEach(function (s) {
        if (open[s.textContent]) s.parentNode.setAttribute("open", "");
      });
      old.replaceWith(copy);
    });
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(liveUrl(), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        swap(html);
        if (status) status.textContent = "Figures updated at " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function () {
        if (status) status.textContent = "Could not refresh the figures; retrying.";
      })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
