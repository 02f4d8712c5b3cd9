// The console's few behaviours; reading works without them. No inline scripts, no eval (the
// Content-Security-Policy allows neither).
(function () {
  "use strict";

  // Live: a region with data-refresh="<seconds>" reloads from data-refresh-url while the tab is
  // visible, unless the operator is busy in it (a row selected, a preview open, focus in a form).
  function busy(region) {
    return region.querySelector("input[name=pk]:checked, #preview, .operation") !== null ||
      (document.activeElement && region.contains(document.activeElement) &&
        document.activeElement.matches("input, select, textarea"));
  }
  function refresh(region) {
    if (document.visibilityState !== "visible" || busy(region) || !window.htmx) return;
    window.htmx.ajax("GET", region.dataset.refreshUrl, { target: region, swap: "innerHTML" });
  }
  function start() {
    document.querySelectorAll("[data-refresh]").forEach(function (region) {
      var seconds = parseInt(region.dataset.refresh, 10) || 10;
      window.setInterval(function () { refresh(region); }, seconds * 1000);
    });
  }

  // "Select every row of this page".
  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-select-all]");
    if (!all) return;
    var form = all.closest("form");
    form.querySelectorAll("input[name=pk]").forEach(function (box) { box.checked = all.checked; });
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
