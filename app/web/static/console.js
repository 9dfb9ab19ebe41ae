// callx console: the review page's keys, and the "what changed" line. Everything else works
// without JavaScript (plain links and forms); htmx only swaps the review card in place.
(function () {
  "use strict";

  function reviewForm() { return document.getElementById("review-form"); }

  function showChanges() {
    var form = reviewForm();
    if (!form) return;
    var out = document.getElementById("changes");
    var save = document.getElementById("save");
    var picked = form.querySelector("input[name=reason]:checked");
    var reason = picked ? picked.value : "";
    var product = (form.querySelector("#product").value || "").trim();
    var parts = [];
    if (reason !== form.dataset.machineReason) {
      var label = picked ? picked.dataset.label : "–";
      parts.push(out.dataset.reasonLabel + ": " + (form.dataset.machineLabel || "–") + " → " + label);
    }
    if (product !== form.dataset.machineProduct.trim()) {
      parts.push(out.dataset.productLabel + ": " + (form.dataset.machineProduct || "–") + " → " + (product || "–"));
    }
    out.textContent = parts.length ? out.dataset.changed + " — " + parts.join("; ") : "";
    if (save) {
      save.querySelector("span").textContent = parts.length || !form.dataset.machineReason ? save.dataset.save : save.dataset.confirm;
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target.form === reviewForm()) showChanges();
  });
  document.addEventListener("change", function (event) {
    if (event.target.form === reviewForm()) showChanges();
  });

  document.addEventListener("keydown", function (event) {
    var form = reviewForm();
    if (!form || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var fieldset = form.querySelector("fieldset");
    var readOnly = fieldset && fieldset.disabled;
    var target = event.target;
    var typing = target.matches && target.matches("input:not([type=radio]):not([type=checkbox]), textarea, select");
    if (typing) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      return; // Enter in the product or note submits the form by itself
    }
    // The digit of the key, whatever the layout (AZERTY gives "&", "é"... without Shift).
    var digit = /^(Digit|Numpad)([1-9])$/.exec(event.code || "");
    var number = digit ? digit[2] : (/^[1-9]$/.test(event.key) ? event.key : null);
    if (event.key === "s" || event.key === "S") {
      var skip = document.getElementById("skip");
      if (skip) { skip.click(); event.preventDefault(); }
      return;
    }
    if (readOnly) return;
    if (number) {
      var radio = form.querySelector('input[name=reason][data-key="' + number + '"]');
      if (radio) { radio.checked = true; radio.focus(); showChanges(); event.preventDefault(); }
    } else if (event.key === "e") {
      var product = form.querySelector("#product");
      product.focus(); product.select(); event.preventDefault();
    } else if (event.key === "Enter") {
      if (target.matches && target.matches("a, button, summary")) return; // their own Enter
      form.requestSubmit(); event.preventDefault();
    }
  });

  // After htmx swapped in the next call: keyboard focus on it, its change line reset.
  document.addEventListener("htmx:afterSettle", function () {
    var heading = document.getElementById("h-card") || document.getElementById("queue-empty");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
    showChanges();
  });
  document.addEventListener("DOMContentLoaded", showChanges);
})();
