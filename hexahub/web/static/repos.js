/* The code view: highlights the line range the address names (#L10-L20 or #L10) and
   scrolls to it; shift-click on a line number extends the range; "Copy link to lines"
   copies the address. Loaded on every page (HTMX-boosted navigation runs no scripts in
   the body), it acts only where a [data-code-view] element exists. Without JavaScript the
   lines are still numbered links and a single #L10 is marked by CSS (:target). */
(function () {
  "use strict";

  var RANGE = /^#L(\d+)(?:-L(\d+))?$/;
  var MAX_MARKED = 20000;

  function codeView() {
    return document.querySelector("[data-code-view]");
  }

  function range() {
    var found = RANGE.exec(window.location.hash);
    if (!found) {
      return null;
    }
    var start = parseInt(found[1], 10);
    var end = found[2] ? parseInt(found[2], 10) : start;
    return start <= end ? [start, end] : [end, start];
  }

  function mark(scroll) {
    var view = codeView();
    if (!view) {
      return;
    }
    view.querySelectorAll(".cl.hl").forEach(function (line) {
      line.classList.remove("hl");
    });
    var lines = range();
    if (!lines) {
      return;
    }
    var first = null;
    var last = Math.min(lines[1], lines[0] + MAX_MARKED);
    for (var n = lines[0]; n <= last; n += 1) {
      var line = document.getElementById("L" + n);
      if (!line) {
        break;
      }
      line.classList.add("hl");
      first = first || line;
    }
    if (first && scroll) {
      first.scrollIntoView({ block: "start" });
    }
  }

  function setup() {
    var view = codeView();
    if (!view || view.hasAttribute("data-ready")) {
      return;
    }
    view.setAttribute("data-ready", "");
    mark(true);

    // Shift-click on a line number: from the marked range's start to this line.
    view.addEventListener("click", function (event) {
      var link = event.target.closest ? event.target.closest("a.ln") : null;
      if (!link || !event.shiftKey) {
        return;
      }
      var current = range();
      var clicked = parseInt(link.textContent, 10);
      if (!current || isNaN(clicked)) {
        return;
      }
      event.preventDefault();
      var start = Math.min(current[0], clicked);
      var end = Math.max(current[0], clicked);
      window.history.replaceState(null, "", "#L" + start + "-L" + end);
      mark(false);
    });

    var button = document.querySelector("[data-copy-link]");
    var status = document.querySelector("[data-copy-link-status]");
    // The Clipboard API exists only on https:// and http://localhost pages.
    if (button && navigator.clipboard && window.isSecureContext) {
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(window.location.href).then(
          function () {
            if (status) {
              status.textContent = "Link copied.";
            }
          },
          function () {
            if (status) {
              status.textContent = "Could not copy; copy the address bar instead.";
            }
          }
        );
      });
    }
  }

  window.addEventListener("hashchange", function () {
    mark(true);
  });
  document.addEventListener("htmx:afterSettle", setup);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
