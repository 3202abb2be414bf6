/* The chat page: streamed answers, Stop, keyboard shortcuts, prompt templates, copy
   buttons on code blocks, and the collapsible sidebar on phones.

   Every form here works without JavaScript (the server waits for the whole answer and
   redirects). With it, a form marked data-stream is sent with fetch() asking for
   text/event-stream, and the answer is written into the page piece by piece as the
   server's events arrive; when it ends, the conversation page is loaded again so the
   answer shows as rendered Markdown. Loaded on every page (HTMX-boosted navigation runs
   no scripts in the body); it does nothing where there is no chat. */
(function () {
  "use strict";

  var VARIABLE = /\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}/g;
  var FOCUS_KEY = "hexahub-chat-focus";
  var STOP_GRACE_MS = 3000;
  var current = null; // the answer being streamed: {controller, url, stopped, stopTimer}

  function chat() {
    return document.getElementById("chat");
  }

  function announce(text) {
    var status = document.getElementById("chat-status");
    if (status) {
      status.textContent = text;
    }
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function localLink(url) {
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" &&
      url.indexOf("\\") === -1;
  }

  /* --- the message list while an answer is written -------------------------------- */

  function messageItem(role, who) {
    var item = element("li", "message message-" + role);
    var heading = element("h2", "visually-hidden", who);
    var label = element("p", "message-who", who);
    label.setAttribute("aria-hidden", "true");
    item.appendChild(heading);
    item.appendChild(label);
    return item;
  }

  function dropAfter(id, includeSelf) {
    var anchor = document.getElementById(id);
    if (!anchor) {
      return;
    }
    while (anchor.nextElementSibling) {
      anchor.parentNode.removeChild(anchor.nextElementSibling);
    }
    if (includeSelf) {
      anchor.parentNode.removeChild(anchor);
    }
  }

  function prepareList(form, content) {
    var list = document.getElementById("messages");
    var empty = document.getElementById("chat-empty");
    if (empty) {
      empty.hidden = true;
    }
    if (form.hasAttribute("data-replace-after")) {
      dropAfter(form.getAttribute("data-replace-after"), form.hasAttribute("data-replace-self"));
    }
    if (form.hasAttribute("data-edit-of")) {
      var edited = document.getElementById(form.getAttribute("data-edit-of"));
      var text = edited && edited.querySelector(".message-text");
      if (text) {
        text.textContent = content;
      }
      var details = form.closest("details");
      if (details) {
        details.open = false;
      }
    } else if (form.id === "composer") {
      var mine = messageItem("user", "You");
      mine.appendChild(element("div", "message-body message-text", content));
      list.appendChild(mine);
    }
    var answer = messageItem("assistant", "Assistant");
    var body = element("div", "message-body message-text message-streaming");
    body.id = "streaming-answer";
    // Read out once the answer is complete, not piece by piece.
    body.setAttribute("aria-live", "polite");
    body.setAttribute("aria-busy", "true");
    answer.appendChild(body);
    var meta = element("p", "message-meta", "Writing…");
    answer.appendChild(meta);
    list.appendChild(answer);
    answer.scrollIntoView({ block: "nearest" });
    return { item: answer, body: body, meta: meta };
  }

  function showCitations(answer, citations) {
    if (!citations || !citations.length) {
      return;
    }
    var box = element("div", "citations");
    box.appendChild(element("h3", "citations-title", "Sources"));
    var list = element("ol");
    citations.forEach(function (cite) {
      var label = "[" + cite.number + "] " + (cite.repo_name || "") + "/" + (cite.path || "");
      var entry = element("li");
      if (localLink(cite.url)) {
        var link = element("a", "", label);
        link.href = cite.url;
        entry.appendChild(link);
      } else {
        entry.textContent = label;
      }
      list.appendChild(entry);
    });
    box.appendChild(list);
    answer.item.insertBefore(box, answer.meta);
  }

  function describe(message) {
    if (!message) {
      return "";
    }
    var tokens = (message.prompt_tokens || 0) + (message.completion_tokens || 0);
    var parts = [message.model || "", tokens + " tokens", "$" + Number(message.cost_usd || 0).toFixed(4)];
    if (message.status && message.status !== "complete") {
      parts.push(message.status);
    }
    return parts.filter(Boolean).join(" · ");
  }

  // The same words as the page's note (chat.html), shown until the page is reloaded.
  function leftOutNote(count) {
    return count + " earlier message" + (count === 1 ? " was" : "s were") +
      " not sent to the model: the conversation is longer than its context window.";
  }

  /* --- Server-Sent Events over fetch() ------------------------------------------ */

  function parseEvent(block) {
    var data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("data:") === 0) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    });
    if (!data.length) {
      return null;
    }
    try {
      return JSON.parse(data.join("\n"));
    } catch (error) {
      return null;
    }
  }

  async function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) {
        break;
      }
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
      var blocks = buffer.split("\n\n");
      buffer = blocks.pop();
      blocks.forEach(function (block) {
        var event = parseEvent(block);
        if (event) {
          onEvent(event);
        }
      });
    }
    var last = parseEvent(buffer);
    if (last) {
      onEvent(last);
    }
  }

  async function refusal(response) {
    try {
      var body = await response.json();
      if (body && body.error && body.error.message) {
        return body.error.message;
      }
    } catch (error) {
      /* not JSON: an error page */
    }
    return "The message was not sent (HTTP " + response.status + ").";
  }

  function setBusy(busy) {
    var send = document.getElementById("send-button");
    var stop = document.getElementById("stop-button");
    if (send) {
      send.disabled = busy;
    }
    if (stop) {
      stop.hidden = !busy;
    }
  }

  function openWhenDone(url) {
    try {
      window.sessionStorage.setItem(FOCUS_KEY, "1");
    } catch (error) {
      /* storage may be off; focus then simply stays at the top */
    }
    if (url === window.location.pathname) {
      window.location.reload();
    } else {
      window.location.assign(url);
    }
  }

  async function stream(form) {
    if (current) {
      return;
    }
    var textarea = form.querySelector("textarea[name=content]");
    var content = textarea ? textarea.value : "";
    if (textarea && !content.trim()) {
      textarea.focus();
      return;
    }
    var data = new URLSearchParams(new FormData(form));
    if (form.id !== "composer") {
      // Regenerate and edit use the model picked in the composer, like a new message.
      var picker = document.getElementById("composer-model");
      if (picker) {
        data.set("model", picker.value);
      }
    }
    var answer = prepareList(form, content);
    if (form.id === "composer" && textarea) {
      textarea.value = "";
    }
    var controller = new AbortController();
    current = { controller: controller, url: null, stopped: false, stopTimer: null };
    setBusy(true);
    announce("The answer is being written.");
    var ended = null;
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: data,
        headers: { Accept: "text/event-stream" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (!response.ok || !response.body) {
        throw new Error(await refusal(response));
      }
      await readEvents(response, function (event) {
        if (event.type === "conversation") {
          current.url = event.url;
          chat().setAttribute("data-stop-url", event.url + "/stop");
        } else if (event.type === "delta") {
          answer.body.appendChild(document.createTextNode(event.text));
        } else if (event.type === "context") {
          showCitations(answer, event.citations);
        } else if (event.type === "done" || event.type === "error") {
          ended = event;
          answer.meta.textContent = describe(event.message);
          var leftOut = event.message && event.message.left_out;
          if (leftOut > 0) {
            answer.item.insertBefore(element("p", "hint message-left-out", leftOutNote(leftOut)), answer.meta);
          }
          if (event.type === "error") {
            var failed = element("p", "message-error", "The model failed: " + event.error.message);
            answer.item.insertBefore(failed, answer.meta);
          }
        }
      });
    } catch (error) {
      if (!current.stopped) {
        answer.meta.textContent = "";
        var problem = element("p", "message-error", error.message || String(error));
        problem.setAttribute("role", "alert");
        answer.item.insertBefore(problem, answer.meta);
        if (form.id === "composer" && textarea && !textarea.value) {
          textarea.value = content; // keep what was typed, to send again
        }
      }
    }
    answer.body.setAttribute("aria-busy", "false");
    var url = current.url;
    var stopped = current.stopped;
    window.clearTimeout(current.stopTimer);
    current = null;
    setBusy(false);
    announce(ended ? (ended.type === "error" ? "The answer failed." : "The answer is complete.") :
      stopped ? "Stopped." : "The answer did not arrive.");
    if (url && (ended || stopped)) {
      openWhenDone(url);
    }
  }

  function stopAnswer() {
    if (!current || current.stopped) {
      return;
    }
    current.stopped = true;
    announce("Stopping…");
    var root = chat();
    var stopUrl = root && root.getAttribute("data-stop-url");
    var token = root && root.getAttribute("data-csrf");
    var running = current;
    // Ask the server to stop (it keeps the partial text and ends the stream); if the
    // stream has not ended soon after, drop the connection, which stops it as well.
    running.stopTimer = window.setTimeout(function () {
      running.controller.abort();
    }, STOP_GRACE_MS);
    if (stopUrl && token) {
      fetch(stopUrl, {
        method: "POST",
        body: new URLSearchParams({ csrf_token: token }),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      }).catch(function () {
        running.controller.abort();
      });
    } else {
      running.controller.abort();
    }
  }

  /* --- prompt templates in the composer ---------------------------------------- */

  function templateVariables(body) {
    var names = [];
    body.replace(VARIABLE, function (match, name) {
      if (names.indexOf(name) === -1) {
        names.push(name);
      }
      return match;
    });
    return names;
  }

  function insertIntoComposer(text) {
    var textarea = document.getElementById("composer-text");
    if (!textarea) {
      return;
    }
    textarea.value = textarea.value.trim() ? textarea.value.replace(/\s*$/, "") + "\n\n" + text : text;
    textarea.focus();
    textarea.setSelectionRange(textarea.value.length, textarea.value.length);
  }

  function setupTemplates(root) {
    var picker = root.querySelector("[data-template-picker]");
    var fields = document.getElementById("template-fields");
    var inputs = document.getElementById("template-fields-inputs");
    if (!picker || !fields || picker.hasAttribute("data-ready")) {
      return;
    }
    picker.setAttribute("data-ready", "");
    var body = "";

    function close() {
      fields.hidden = true;
      inputs.textContent = "";
      picker.value = "";
    }

    picker.addEventListener("change", function () {
      var option = picker.options[picker.selectedIndex];
      body = option ? option.getAttribute("data-body") || "" : "";
      if (!picker.value) {
        close();
        return;
      }
      var names = templateVariables(body);
      if (!names.length) {
        insertIntoComposer(body);
        close();
        return;
      }
      inputs.textContent = "";
      names.forEach(function (name, index) {
        var wrap = element("div", "field");
        var label = element("label", "", name);
        label.htmlFor = "template-var-" + index;
        var input = element("input");
        input.type = "text";
        input.id = "template-var-" + index;
        input.setAttribute("data-variable", name);
        wrap.appendChild(label);
        wrap.appendChild(input);
        inputs.appendChild(wrap);
      });
      document.getElementById("template-fields-title").textContent =
        "Variables of “" + option.textContent + "”";
      fields.hidden = false;
      inputs.querySelector("input").focus();
    });

    function fill() {
      var values = {};
      inputs.querySelectorAll("[data-variable]").forEach(function (input) {
        values[input.getAttribute("data-variable")] = input.value;
      });
      // A function replacement: values are inserted as typed, never re-expanded.
      insertIntoComposer(body.replace(VARIABLE, function (match, name) {
        return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : match;
      }));
      close();
    }

    document.getElementById("template-insert").addEventListener("click", fill);
    document.getElementById("template-cancel").addEventListener("click", function () {
      close();
      picker.focus();
    });
    inputs.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        fill();
      }
    });
  }

  /* --- copy buttons on code blocks ------------------------------------------------ */

  function setupCopyButtons(root) {
    if (!navigator.clipboard || !window.isSecureContext) {
      return; // the Clipboard API exists only on https:// and localhost pages
    }
    root.querySelectorAll(".markdown .codeblock").forEach(function (block) {
      if (block.hasAttribute("data-ready")) {
        return;
      }
      block.setAttribute("data-ready", "");
      var language = block.getAttribute("data-lang");
      var button = element("button", "button button-small button-quiet copy-code", "Copy code");
      button.type = "button";
      button.setAttribute("aria-label", language ? "Copy " + language + " code" : "Copy code");
      button.addEventListener("click", function () {
        var code = block.querySelector("code") || block;
        navigator.clipboard.writeText(code.innerText).then(
          function () {
            button.textContent = "Copied";
            announce("Code copied.");
            window.setTimeout(function () {
              button.textContent = "Copy code";
            }, 2000);
          },
          function () {
            announce("Could not copy: select the code and press Ctrl+C.");
          }
        );
      });
      block.insertBefore(button, block.firstChild);
    });
  }

  /* --- the sidebar on small screens ------------------------------------------------ */

  function setupSidebar(root) {
    var toggle = document.getElementById("sidebar-toggle");
    var body = document.getElementById("sidebar-body");
    if (!toggle || !body || toggle.hasAttribute("data-ready")) {
      return;
    }
    toggle.setAttribute("data-ready", "");
    var narrow = window.matchMedia("(max-width: 48rem)");

    function set(open) {
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      body.hidden = !open;
    }

    function fit() {
      toggle.hidden = !narrow.matches;
      set(!narrow.matches);
    }

    toggle.addEventListener("click", function () {
      set(body.hidden);
    });
    if (narrow.addEventListener) {
      narrow.addEventListener("change", fit);
    }
    fit();
  }

  /* --- wiring ---------------------------------------------------------------------- */

  function typing(target) {
    if (!target || !target.tagName) {
      return false;
    }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function onKey(event) {
    var root = chat();
    if (!root) {
      return;
    }
    var target = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.tagName === "TEXTAREA") {
      var form = target.form;
      if (form && form.hasAttribute("data-stream")) {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    if (event.key === "Escape" && current) {
      event.preventDefault();
      stopAnswer();
      return;
    }
    var newChat =
      (event.altKey && !event.ctrlKey && !event.metaKey && event.code === "KeyN") ||
      ((event.ctrlKey || event.metaKey) && event.shiftKey && event.code === "KeyO");
    if (newChat) {
      event.preventDefault();
      window.location.assign(root.getAttribute("data-new-url"));
      return;
    }
    if (event.key === "/" && !event.ctrlKey && !event.metaKey && !event.altKey && !typing(target)) {
      var search = document.getElementById("chat-search");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    }
  }

  function onSubmit(event) {
    var form = event.target;
    if (!chat() || !form || !form.closest) {
      return;
    }
    if (form.hasAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-stream") && window.fetch && window.ReadableStream) {
      event.preventDefault();
      stream(form);
    }
  }

  function setup() {
    var root = chat();
    if (!root) {
      return;
    }
    setupTemplates(root);
    setupCopyButtons(root);
    setupSidebar(root);
    var stop = document.getElementById("stop-button");
    if (stop && !stop.hasAttribute("data-ready")) {
      stop.setAttribute("data-ready", "");
      stop.addEventListener("click", stopAnswer);
    }
    var focus = null;
    try {
      focus = window.sessionStorage.getItem(FOCUS_KEY);
      window.sessionStorage.removeItem(FOCUS_KEY);
    } catch (error) {
      focus = null;
    }
    var composer = document.getElementById("composer-text");
    if (focus && composer) {
      var list = document.getElementById("messages");
      if (list && list.lastElementChild) {
        list.lastElementChild.scrollIntoView({ block: "nearest" });
      }
      composer.focus();
    }
  }

  document.addEventListener("keydown", onKey);
  document.addEventListener("submit", onSubmit);
  // After HTMX-boosted navigation the new page's content needs its buttons too.
  document.addEventListener("htmx:afterSettle", setup);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
