// grokproxy's chat page: talks to /v1 with the user's own API key, like any other chat app, and
// keeps its history through the page's own API (/chat/api, under the web session).
"use strict";

(function () {
  const body = document.body;
  // Everything is relative to this page (/chat -> /v1, /prefix/chat -> /prefix/v1): it works
  // through any proxy, port or path prefix, with no PUBLIC_URL. A MIRROR_API_PREFIX (e.g. /k3y)
  // puts the API under that secret path: /chat -> /k3y/v1.
  const apiRoot = (body.dataset.apiPrefix || "").replace(/^\/+/, "").replace(/\/*$/, "");
  const apiPath = (apiRoot ? apiRoot + "/" : "") + "v1";
  const apiBase = new URL(apiPath, window.location.href).href;
  const apiKey = body.dataset.apiKey;
  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const modelSelect = $("model");
  const modelDescription = $("model-description");
  const messagesList = $("messages");
  const scroller = $("scroller");
  const form = $("composer");
  const prompt = $("prompt");
  const sendButton = $("send");
  const stopButton = $("stop");
  const statusLine = $("status");
  const conversationLabel = $("conversation-label");
  const titleHeading = $("conversation-title");
  const conversationsList = $("conversations");
  const attachmentsList = $("attachments");
  const fileInput = $("file-input");
  $("api-base").textContent = apiBase;

  const MAX_IMAGES = 4;
  const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
  const MODEL_KEY = "grokproxy.model";

  // The conversation shown: its stored thread (null until its first turn is recorded), the
  // upstream conversation it continues, and its turns as shown.
  let thread = null;
  let conversationId = null;
  let turns = []; // {role, content, reasoning, response_id, image_count, error, images, recorded, item}
  let pending = []; // images attached to the next message: {name, url}
  let running = null; // AbortController of the reply being streamed
  let models = [];

  // ---- rendering -----------------------------------------------------------------------------

  // Raw HTML in a reply is shown as text, never parsed: a model's answer has no business
  // writing markup, and an HTML parser never sees a hostile attribute. DOMPurify still cleans
  // what markdown itself can produce (javascript: links, odd image URLs).
  const escapeHtml = (text) =>
    text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  marked.use({
    gfm: true,
    breaks: false,
    renderer: {
      html(token) {
        return escapeHtml(token.text || token.raw || "");
      },
    },
  });
  hljs.configure({ ignoreUnescapedHTML: true });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  const PURIFY = {
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "svg", "math"],
    FORBID_ATTR: ["style"],
  };

  function citationHost(href) {
    try {
      return new URL(href).hostname;
    } catch (_) {
      return href;
    }
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on a LAN address is not a secure context: the old way still works there.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function flash(button, text, then) {
    button.textContent = text;
    setTimeout(() => (button.textContent = then), 1500);
  }

  // After sanitizing: numbered citations become small links, code blocks get highlighting and a
  // copy button, images load lazily.
  function decorate(root) {
    for (const link of root.querySelectorAll("a[href]")) {
      const match = /^\[(\d+)\]$/.exec(link.textContent.trim());
      if (match) {
        link.textContent = match[1];
        link.className = "citation";
        link.title = citationHost(link.href);
        // The same source cited twice in a row reads as a stutter: show it once.
        const before = link.previousSibling;
        const gap = before && before.nodeType === Node.TEXT_NODE && !before.textContent.trim();
        const previous = gap ? before.previousSibling : before;
        if (previous && previous.nodeType === Node.ELEMENT_NODE && previous.classList.contains("citation") && previous.href === link.href) {
          if (gap) before.remove();
          link.remove();
        }
      }
    }
    for (const code of root.querySelectorAll("pre > code")) {
      const pre = code.parentElement;
      hljs.highlightElement(code);
      const language = (/language-([\w+#-]+)/.exec(code.className) || [])[1] || "";
      const bar = document.createElement("div");
      bar.className = "code-bar";
      const label = document.createElement("span");
      label.textContent = language || "code";
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy-code small";
      copy.textContent = "Copy";
      copy.addEventListener("click", () => {
        copyText(code.textContent).then(
          () => flash(copy, "Copied", "Copy"),
          () => flash(copy, "Copy failed", "Copy"),
        );
      });
      bar.append(label, copy);
      const wrap = document.createElement("div");
      wrap.className = "code-block";
      pre.replaceWith(wrap);
      wrap.append(bar, pre);
    }
    for (const image of root.querySelectorAll("img")) {
      image.loading = "lazy";
      image.decoding = "async";
    }
    for (const table of root.querySelectorAll("table")) {
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      table.replaceWith(wrap);
      wrap.appendChild(table);
    }
  }

  function renderMarkdown(element, text) {
    element.innerHTML = DOMPurify.sanitize(marked.parse(text || ""), PURIFY);
    decorate(element);
  }

  // Reasoning arrives as paragraphs separated by blank lines, some doubled: show it tight.
  function tidyReasoning(text) {
    return (text || "").replace(/\r/g, "").replace(/\n{3,}/g, "\n\n").trim();
  }

  // ---- small helpers ---------------------------------------------------------------------------

  // Icons as inline SVG (24x24 strokes): emoji glyphs depend on the fonts a device has.
  const ICONS = {
    pencil: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
    trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6",
  };
  function icon(name) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.classList.add("svg-icon");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", ICONS[name]);
    svg.appendChild(path);
    return svg;
  }

  function setStatus(text) {
    statusLine.textContent = text || "";
  }

  function setBusy(busy) {
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
    form.dataset.busy = busy ? "true" : "false";
    for (const button of messagesList.querySelectorAll(".turn-actions button")) {
      button.disabled = busy;
    }
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  }

  function scrollToEnd(force) {
    if (force || nearBottom()) scroller.scrollTop = scroller.scrollHeight;
  }

  function showConversation() {
    conversationLabel.textContent = conversationId ? "Continuing conversation" : "New conversation";
    conversationLabel.dataset.conversationId = conversationId || "";
    titleHeading.textContent = thread ? thread.title : "New conversation";
    document.title = (thread ? thread.title + " · " : "") + "grokproxy";
    $("empty-state").hidden = turns.length > 0;
    for (const item of conversationsList.querySelectorAll("li")) {
      const current = thread && item.dataset.id === String(thread.id);
      item.querySelector(".open").setAttribute("aria-current", current ? "page" : "false");
    }
  }

  function localTime(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function inMinutes(seconds) {
    if (seconds < 90) return Math.max(1, Math.round(seconds)) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return Math.round(seconds / 3600) + " h";
  }

  // A failure in words a person can act on; `retryAfter` in seconds when the server said.
  function explain(status, error, retryAfter) {
    const code = (error && error.code) || "";
    const message = (error && error.message) || "";
    const back = retryAfter ? new Date(Date.now() + retryAfter * 1000) : null;
    const when = back ? ` It is back at ${localTime(back)} (in ${inMinutes(retryAfter)}).` : "";
    if (code === "daily_limit_reached") {
      const reset = back ? ` It resets at ${localTime(back)}.` : " It resets tomorrow.";
      return "You have reached today's message limit on this gateway." + reset;
    }
    if (status === 429 || code === "rate_limited") {
      return "Your grok account is cooling down after reaching grok.com's limit." + (when || " Try again in a while.");
    }
    if (/removed from the gateway/.test(message)) {
      return "Your grok account was removed from this gateway. Ask the operator to log you in again.";
    }
    if (status === 401) return "You are signed out. Open your login link again.";
    if (code === "conversation_not_found") {
      return "grok.com no longer has this conversation. Start a new chat to go on.";
    }
    if (code === "no_available_account") {
      return "No grok account can answer right now." + (when || " Try again in a few minutes.");
    }
    return message || "The reply failed (HTTP " + status + ").";
  }

  async function readError(response) {
    let error = null;
    try {
      const data = await response.json();
      error = data && data.error;
    } catch (_) {
      /* not JSON */
    }
    const retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
    return explain(response.status, error, Number.isFinite(retryAfter) ? retryAfter : null);
  }

  function v1(path) {
    return apiPath + path;
  }

  function v1Headers() {
    return { Authorization: "Bearer " + apiKey, "Content-Type": "application/json" };
  }

  // The page's own API: the session cookie signs it; the header marks changes as the page's.
  async function pageApi(method, path, payload) {
    const options = { method, headers: { "X-Chat-Page": "1" }, credentials: "same-origin" };
    if (payload !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(payload);
    }
    const response = await fetch("chat/api/" + path, options);
    if (!response.ok) throw new Error(await readError(response));
    return response.json();
  }

  // ---- models ----------------------------------------------------------------------------------

  function describeModel() {
    const model = models.find((m) => m.id === modelSelect.value);
    modelDescription.textContent = model ? model.description : "";
  }

  async function loadModels() {
    try {
      const data = await pageApi("GET", "models");
      models = data.data || [];
      for (const model of models) {
        const option = document.createElement("option");
        option.value = option.textContent = model.id;
        option.title = model.description;
        modelSelect.appendChild(option);
      }
      const saved = window.localStorage.getItem(MODEL_KEY);
      const known = (id) => id && models.some((m) => m.id === id);
      modelSelect.value = known(saved) ? saved : known(data.default) ? data.default : models[0].id;
      describeModel();
      modelSelect.dataset.loaded = "true";
    } catch (err) {
      setStatus("Could not load the models: " + err.message);
    }
  }

  modelSelect.addEventListener("change", () => {
    window.localStorage.setItem(MODEL_KEY, modelSelect.value);
    describeModel();
  });

  // ---- the conversation list -------------------------------------------------------------------

  function conversationItem(summary) {
    const item = document.createElement("li");
    item.dataset.id = String(summary.id);
    item.dataset.conversationId = summary.conversation_id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = summary.title;
    open.title = summary.title;
    open.addEventListener("click", () => openThread(summary.id));
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "rename icon small";
    rename.appendChild(icon("pencil"));
    rename.setAttribute("aria-label", "Rename " + summary.title);
    rename.addEventListener("click", () => startRename(item, summary));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete icon small";
    remove.appendChild(icon("trash"));
    remove.setAttribute("aria-label", "Delete " + summary.title);
    remove.addEventListener("click", () => confirmDelete(item, summary));
    item.append(open, rename, remove);
    return item;
  }

  async function loadConversations() {
    try {
      const data = await pageApi("GET", "conversations");
      conversationsList.replaceChildren(...data.data.map(conversationItem));
      $("conversations-empty").hidden = data.data.length > 0;
      const current = thread && data.data.find((s) => s.id === thread.id);
      if (current) thread = current;
      conversationsList.dataset.loaded = "true";
      showConversation();
    } catch (err) {
      setStatus("Could not load your conversations: " + err.message);
    }
  }

  function startRename(item, summary) {
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.value = summary.title;
    input.maxLength = 200;
    input.setAttribute("aria-label", "New title");
    item.replaceChildren(input);
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      if (save && title && title !== summary.title) {
        try {
          const updated = await pageApi("PATCH", "conversations/" + summary.id, { title });
          if (thread && thread.id === updated.id) thread = updated;
        } catch (err) {
          setStatus("Could not rename: " + err.message);
        }
      }
      await loadConversations();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  function confirmDelete(item, summary) {
    const question = document.createElement("span");
    question.className = "confirm";
    question.textContent = "Delete this conversation?";
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "danger small confirm-delete";
    yes.textContent = "Delete";
    const no = document.createElement("button");
    no.type = "button";
    no.className = "small";
    no.textContent = "Cancel";
    item.replaceChildren(question, yes, no);
    no.focus();
    no.addEventListener("click", () => loadConversations());
    yes.addEventListener("click", async () => {
      try {
        await pageApi("DELETE", "conversations/" + summary.id);
        if (thread && thread.id === summary.id) newChat();
      } catch (err) {
        setStatus("Could not delete: " + err.message);
      }
      await loadConversations();
    });
  }

  async function openThread(id) {
    if (running) running.abort();
    try {
      const data = await pageApi("GET", "conversations/" + id);
      thread = data;
      conversationId = data.conversation_id;
      turns = [];
      messagesList.replaceChildren();
      for (const message of data.messages) {
        const turn = { ...message, images: [], recorded: true };
        turns.push(turn);
        turn.item = message.role === "user" ? userItem(turn) : assistantItem(turn, false);
      }
      if (data.model && models.some((m) => m.id === data.model)) {
        modelSelect.value = data.model;
        describeModel();
      }
      refreshActions();
      showConversation();
      closeSidebar();
      scrollToEnd(true);
      prompt.focus();
    } catch (err) {
      setStatus("Could not open the conversation: " + err.message);
    }
  }

  function newChat() {
    if (running) running.abort();
    thread = null;
    conversationId = null;
    turns = [];
    messagesList.replaceChildren();
    setStatus("");
    showConversation();
    closeSidebar();
    prompt.focus();
  }

  // ---- turns -----------------------------------------------------------------------------------

  function userItem(turn) {
    const item = document.createElement("li");
    item.className = "message user";
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = turn.content;
    item.appendChild(text);
    if (turn.images && turn.images.length) {
      const strip = document.createElement("div");
      strip.className = "sent-images";
      for (const image of turn.images) {
        const img = document.createElement("img");
        img.src = image.url;
        img.alt = image.name || "attached image";
        strip.appendChild(img);
      }
      item.appendChild(strip);
    } else if (turn.image_count) {
      const note = document.createElement("div");
      note.className = "muted small";
      note.textContent = turn.image_count === 1 ? "1 image attached" : turn.image_count + " images attached";
      item.appendChild(note);
    }
    const actions = document.createElement("div");
    actions.className = "turn-actions";
    item.appendChild(actions);
    messagesList.appendChild(item);
    return item;
  }

  function assistantItem(turn, streaming) {
    const item = document.createElement("li");
    item.className = "message assistant";
    item.dataset.state = streaming ? "streaming" : "done";
    const details = document.createElement("details");
    details.className = "reasoning";
    const summary = document.createElement("summary");
    summary.textContent = streaming ? "Thinking…" : "Reasoning";
    const reasoning = document.createElement("div");
    reasoning.className = "reasoning-text markdown";
    details.append(summary, reasoning);
    details.hidden = !turn.reasoning;
    details.open = false;
    const text = document.createElement("div");
    text.className = "text markdown";
    item.append(details, text);
    if (turn.reasoning) renderMarkdown(reasoning, tidyReasoning(turn.reasoning));
    if (turn.content) renderMarkdown(text, turn.content);
    if (turn.error) showError(item, turn.error);
    const actions = document.createElement("div");
    actions.className = "turn-actions";
    item.appendChild(actions);
    messagesList.appendChild(item);
    return item;
  }

  function showError(item, text) {
    let box = item.querySelector(".error");
    if (!box) {
      box = document.createElement("div");
      box.className = "error";
      box.setAttribute("role", "alert");
      item.insertBefore(box, item.querySelector(".turn-actions"));
    }
    box.textContent = text;
  }

  function actionButton(label, className, handler) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small " + className;
    button.textContent = label;
    button.addEventListener("click", handler);
    return button;
  }

  // Copy on every answer; regenerate (or retry) on the last one, edit on the last question.
  function refreshActions() {
    const lastUser = turns.map((t) => t.role).lastIndexOf("user");
    const lastAnswer = turns.map((t) => t.role).lastIndexOf("assistant");
    turns.forEach((turn, index) => {
      const actions = turn.item.querySelector(".turn-actions");
      actions.replaceChildren();
      if (turn.role === "assistant" && turn.content) {
        const copy = actionButton("Copy", "copy-answer", () =>
          copyText(turn.content).then(
            () => flash(copy, "Copied", "Copy"),
            () => flash(copy, "Copy failed", "Copy"),
          ),
        );
        actions.appendChild(copy);
      }
      if (turn.role === "assistant" && index === lastAnswer && lastUser >= 0) {
        const label = turn.error ? "Retry" : "Regenerate";
        actions.appendChild(actionButton(label, "regenerate", () => regenerate()));
      }
      if (turn.role === "user" && index === lastUser) {
        actions.appendChild(actionButton("Edit", "edit", () => startEdit(turn)));
      }
    });
  }

  function startEdit(turn) {
    if (running) return;
    const item = turn.item;
    const area = document.createElement("textarea");
    area.className = "edit-box";
    area.value = turn.content;
    area.rows = Math.min(8, turn.content.split("\n").length + 1);
    area.setAttribute("aria-label", "Edit your message");
    const save = actionButton("Send", "primary save-edit", () => {
      const text = area.value.trim();
      if (text) resend(text);
    });
    const cancel = actionButton("Cancel", "cancel-edit", () => {
      item.querySelector(".text").hidden = false;
      area.remove();
      row.remove();
    });
    const row = document.createElement("div");
    row.className = "edit-actions";
    row.append(save, cancel);
    item.querySelector(".text").hidden = true;
    item.insertBefore(area, item.querySelector(".turn-actions"));
    item.insertBefore(row, item.querySelector(".turn-actions"));
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save.click();
      } else if (event.key === "Escape") {
        cancel.click();
      }
    });
    area.focus();
  }

  // Where a redone last exchange hangs upstream: the answer before its question, or a new
  // conversation when it was the first exchange.
  function parentOfLastExchange(lastUser) {
    for (let i = lastUser - 1; i >= 0; i--) {
      if (turns[i].role === "assistant" && turns[i].response_id) return turns[i].response_id;
    }
    return null;
  }

  function dropLastExchange() {
    const lastUser = turns.map((t) => t.role).lastIndexOf("user");
    const removed = turns.splice(lastUser);
    for (const turn of removed) turn.item.remove();
    return removed[0];
  }

  function regenerate() {
    if (running) return;
    const lastUser = turns.map((t) => t.role).lastIndexOf("user");
    if (lastUser < 0) return;
    const question = turns[lastUser];
    redo(question.content, question.images || [], question.recorded, lastUser);
  }

  function resend(text) {
    const lastUser = turns.map((t) => t.role).lastIndexOf("user");
    const question = turns[lastUser];
    redo(text, question.images || [], question.recorded, lastUser);
  }

  function redo(text, images, replace, lastUser) {
    const parent = parentOfLastExchange(lastUser);
    dropLastExchange();
    send(text, images, { replace, parent, fresh: parent === null });
  }

  // ---- sending ---------------------------------------------------------------------------------

  function requestFor(text, images, options) {
    let content = text;
    if (images.length) {
      content = [{ type: "text", text }].concat(
        images.map((image) => ({ type: "image_url", image_url: { url: image.url } })),
      );
    }
    const request = { model: modelSelect.value, stream: true, messages: [{ role: "user", content }] };
    // Continuing: grokproxy keeps the history upstream (and the last reply's id, which becomes
    // the parent), so only the new message is sent.
    if (conversationId && !options.fresh) {
      request.conversation_id = conversationId;
      if (options.parent) request.parent_message_id = options.parent;
    }
    return request;
  }

  function storedTurn(turn) {
    return {
      role: turn.role,
      content: turn.content,
      reasoning: turn.reasoning || null,
      response_id: turn.response_id || null,
      image_count: turn.images ? turn.images.length : turn.image_count || 0,
      error: turn.error ? turn.error.slice(0, 500) : null,
    };
  }

  // Record turns; the first creates the stored conversation. Never throws: the chat goes on.
  async function record(list, replace) {
    const payload = {
      conversation_id: conversationId,
      model: modelSelect.value,
      replace_last: Boolean(replace),
      messages: list.map(storedTurn),
    };
    try {
      thread = thread
        ? await pageApi("POST", "conversations/" + thread.id + "/messages", payload)
        : await pageApi("POST", "conversations", payload);
      for (const turn of list) turn.recorded = true;
    } catch (err) {
      setStatus("This turn could not be saved to your history: " + err.message);
    }
  }

  async function send(text, images, options) {
    options = options || {};
    const question = { role: "user", content: text, images, recorded: false };
    question.item = userItem(question);
    const answer = { role: "assistant", content: "", reasoning: "", response_id: null, error: null };
    answer.item = assistantItem(answer, true);
    turns.push(question, answer);
    showConversation();
    refreshActions();
    scrollToEnd(true);

    const item = answer.item;
    const details = item.querySelector(".reasoning");
    const summary = details.querySelector("summary");
    const reasoningBox = details.querySelector(".reasoning-text");
    const textBox = item.querySelector(".text");
    const started = Date.now();
    let frame = 0;
    let answerStarted = false;
    let recordedQuestion = null;

    function paint() {
      frame = 0;
      if (answer.reasoning) renderMarkdown(reasoningBox, tidyReasoning(answer.reasoning));
      renderMarkdown(textBox, answer.content);
      scrollToEnd(false);
    }
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(paint);
    };

    function onConversation(id) {
      if (!id || recordedQuestion) return;
      conversationId = id;
      // Stored as soon as grok.com has the conversation, so a lost answer keeps its question.
      recordedQuestion = record([question], options.replace);
    }

    function apply(data) {
      if (data === "[DONE]") return false;
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch (_) {
        return true;
      }
      if (chunk.error) {
        answer.error = explain(0, chunk.error, null);
        showError(item, answer.error);
        return true;
      }
      if (chunk.conversation_id) onConversation(chunk.conversation_id);
      if (chunk.message_id) answer.response_id = chunk.message_id;
      const choice = (chunk.choices || [])[0];
      const delta = choice && choice.delta;
      if (!delta) return true;
      if (delta.reasoning_content) {
        answer.reasoning += delta.reasoning_content;
        if (!answerStarted) {
          details.hidden = false;
          details.open = true;
        }
      }
      if (delta.content) {
        if (!answerStarted) {
          answerStarted = true;
          // The answer has begun: fold the thinking away (one click brings it back).
          details.open = false;
          summary.textContent = "Thought for " + inMinutes((Date.now() - started) / 1000);
        }
        answer.content += delta.content;
      }
      schedule();
      return true;
    }

    // Resolves true at [DONE]; false when the body ended without it (a proxy or the network
    // cut the answer short), which is a lost connection too.
    async function readStream(response) {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          // Comment lines (": keep-alive") and blank separators carry nothing to show.
          if (!line.startsWith("data:")) continue;
          if (!apply(line.slice(5).trimStart())) return true;
        }
      }
    }

    function connectionLost() {
      answer.error =
        "The connection was lost before the answer was complete" +
        (answer.content ? "; what arrived is kept." : ".") +
        " Check your network and retry.";
      showError(item, answer.error);
    }

    running = new AbortController();
    setBusy(true);
    setStatus("Waiting for the answer…");
    if (options.fresh) conversationId = null;
    try {
      const response = await fetch(v1("/chat/completions"), {
        method: "POST",
        headers: v1Headers(),
        body: JSON.stringify(requestFor(text, images, options)),
        signal: running.signal,
      });
      if (!response.ok) {
        answer.error = await readError(response);
        showError(item, answer.error);
        setStatus("");
        return;
      }
      onConversation(response.headers.get("X-Conversation-Id"));
      answer.response_id = response.headers.get("X-Message-Id") || answer.response_id;
      setStatus("Answering…");
      const complete = await readStream(response);
      setStatus("");
      if (!complete && !answer.error) connectionLost();
    } catch (err) {
      if (err.name === "AbortError") {
        setStatus("Stopped.");
      } else {
        connectionLost();
        setStatus("");
      }
    } finally {
      if (frame) cancelAnimationFrame(frame);
      paint();
      if (!answer.reasoning) details.hidden = true;
      else if (!answerStarted) summary.textContent = "Reasoning";
      if (details.open && answer.content) details.open = false;
      item.dataset.state = "done";
      running = null;
      setBusy(false);
      refreshActions();
      showConversation();
      prompt.focus();
    }
    if (recordedQuestion) {
      await recordedQuestion;
      if (question.recorded) await record([answer], false);
      await loadConversations();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    const images = pending.filter((image) => image.url); // a file still being read is left out
    pending = [];
    renderAttachments();
    prompt.value = "";
    growPrompt();
    send(text, images, {});
  });

  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function growPrompt() {
    prompt.style.height = "auto";
    prompt.style.height = Math.min(prompt.scrollHeight, 240) + "px";
  }
  prompt.addEventListener("input", growPrompt);

  stopButton.addEventListener("click", () => {
    if (running) running.abort();
  });

  $("new-chat").addEventListener("click", newChat);

  // ---- attachments -----------------------------------------------------------------------------

  function renderAttachments() {
    attachmentsList.replaceChildren(
      ...pending.map((image, index) => {
        const item = document.createElement("li");
        const img = document.createElement("img");
        img.src = image.url;
        img.alt = image.name;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "icon small remove-attachment";
        remove.textContent = "×";
        remove.setAttribute("aria-label", "Remove " + image.name);
        remove.addEventListener("click", () => {
          pending.splice(index, 1);
          renderAttachments();
        });
        item.append(img, remove);
        return item;
      }),
    );
    attachmentsList.hidden = pending.length === 0;
  }

  function addFiles(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/")) {
        setStatus(file.name + " is not an image: only images can be attached.");
        continue;
      }
      if (file.size > MAX_IMAGE_BYTES) {
        setStatus(file.name + " is larger than 10 MB.");
        continue;
      }
      if (pending.length >= MAX_IMAGES) {
        setStatus("At most " + MAX_IMAGES + " images per message.");
        break;
      }
      const slot = { name: file.name || "pasted image", url: "" };
      pending.push(slot);
      const reader = new FileReader();
      reader.onload = () => {
        slot.url = reader.result;
        renderAttachments();
      };
      reader.readAsDataURL(file);
    }
  }

  $("attach").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    addFiles(fileInput.files);
    fileInput.value = "";
  });
  prompt.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData ? event.clipboardData.files : [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  const main = document.querySelector("main.conversation");
  main.addEventListener("dragover", (event) => {
    if ([...event.dataTransfer.types].includes("Files")) {
      event.preventDefault();
      main.dataset.dragging = "true";
    }
  });
  main.addEventListener("dragleave", (event) => {
    if (event.target === main) delete main.dataset.dragging;
  });
  main.addEventListener("drop", (event) => {
    event.preventDefault();
    delete main.dataset.dragging;
    addFiles(event.dataTransfer.files);
  });

  // ---- sidebar on a phone ----------------------------------------------------------------------

  const toggle = $("toggle-sidebar");
  const scrim = $("scrim");
  function setSidebar(open) {
    app.dataset.sidebar = open ? "open" : "closed";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    scrim.hidden = !open;
  }
  function closeSidebar() {
    if (app.dataset.sidebar === "open") setSidebar(false);
  }
  toggle.addEventListener("click", () => setSidebar(app.dataset.sidebar !== "open"));
  scrim.addEventListener("click", closeSidebar);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });

  // ---- the key panel: masked until asked for, copyable either way ------------------------------

  const keyElement = $("api-key");
  const masked = apiKey.slice(0, 6) + "…" + apiKey.slice(-4);
  keyElement.textContent = masked;
  $("toggle-key").addEventListener("click", (event) => {
    const hidden = keyElement.dataset.hidden === "true";
    keyElement.textContent = hidden ? apiKey : masked;
    keyElement.dataset.hidden = hidden ? "false" : "true";
    event.target.textContent = hidden ? "Hide" : "Show";
  });
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", () => {
      const text = button.dataset.copy === "api-key" ? apiKey : $(button.dataset.copy).textContent;
      copyText(text).then(
        () => flash(button, "Copied", "Copy"),
        () => flash(button, "Copy failed", "Copy"),
      );
    });
  }

  for (const time of document.querySelectorAll("time.local-time")) {
    time.textContent = localTime(new Date(time.getAttribute("datetime")));
  }

  renderAttachments();
  showConversation();
  loadModels();
  loadConversations();
})();
