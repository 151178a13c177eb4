// postoffice panel: confirmation dialogs, copy buttons, the three-dots menus and show/hide.
// No inline scripts (the Content-Security-Policy allows only files from this origin).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var target = event.target;
    var confirmBtn = target.closest("[data-confirm]");
    if (confirmBtn) {
      var dialog = document.getElementById("confirm-dialog");
      document.getElementById("confirm-form").action = confirmBtn.dataset.action;
      document.getElementById("confirm-title").textContent = confirmBtn.dataset.title || "Are you sure?";
      document.getElementById("confirm-text").textContent = confirmBtn.dataset.text || "";
      document.getElementById("confirm-ok").textContent = confirmBtn.dataset.ok || "Delete";
      var menu = confirmBtn.closest("details.menu");
      if (menu) menu.open = false;
      dialog.showModal();
      return;
    }
    if (target.closest("[data-close-dialog]")) {
      target.closest("dialog").close();
      return;
    }
    var copy = target.closest("[data-copy]");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(copy.dataset.copy).then(function () {
        copy.classList.add("copied");
        setTimeout(function () { copy.classList.remove("copied"); }, 1200);
      });
      return;
    }
    var toggle = target.closest("[data-toggle]");
    if (toggle) {
      var panel = document.getElementById(toggle.dataset.toggle);
      panel.classList.toggle("is-hidden");
      var first = panel.querySelector("input:not([type=hidden])");
      if (first && !panel.classList.contains("is-hidden")) first.focus();
      return;
    }
    // Close any open three-dots menu when clicking elsewhere.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(target)) menu.open = false;
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details.menu[open]").forEach(function (menu) { menu.open = false; });
    }
  });
})();
