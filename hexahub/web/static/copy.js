/* Progressive enhancement for the one-time API key page: a Copy button, and selecting the
   whole key on focus. Without JavaScript the key is still shown and can be copied by hand. */
(function () {
  "use strict";

  function setup() {
    document.querySelectorAll("[data-copy-from]").forEach(function (button) {
      var field = document.getElementById(button.getAttribute("data-copy-from"));
      var status = document.querySelector("[data-copy-status]");
      if (!field) {
        return;
      }
      field.addEventListener("focus", function () {
        field.select();
      });
      // The Clipboard API exists only on https:// and http://localhost pages.
      if (!navigator.clipboard || !window.isSecureContext) {
        return;
      }
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(field.value).then(
          function () {
            if (status) {
              status.textContent = "Copied.";
            }
          },
          function () {
            field.focus();
            if (status) {
              status.textContent = "Could not copy: the key is selected, press Ctrl+C.";
            }
          }
        );
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
