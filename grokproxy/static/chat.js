// grokproxy's chat page: talks to /v1 with the user's own API key, like any other chat app.
"use strict";

(function () {
  const body = document.body;
  // The API lives beside this page (/chat -> /v1, /prefix/chat -> /prefix/v1): relative URLs
  // work through any proxy, port or path prefix, with no PUBLIC_URL.
  const apiBase = new URL("v1", window.location.href).href;
  const apiKey = body.dataset.apiKey;
  const $ = (id) => document.getElementById(id);
  const modelSelect = $("model");
  const messages = $("messages");
  const form = $("composer");
  const prompt = $("prompt");
  const sendButton = $("send");
  const stopButton = $("stop");
  const statusLine = $("status");
  const conversationLabel = $("conversation-label");
  $("api-base").textContent = apiBase;

  // The conversation being continued: its id from the previous reply.
  let conversationId = null;
  let running = null; // AbortController of the reply being streamed

  function apiUrl(path) {
    return "v1" + path;
  }

  function headers() {
    return { Authorization: "Bearer " + apiKey, "Content-Type": "application/json" };
  }

  function setStatus(text) {
    statusLine.textContent = text || "";
  }

  function setBusy(busy) {
    sendButton.disabled = busy;
    stopButton.hidden = !busy;
    form.dataset.busy = busy ? "true" : "false";
  }

  function showConversation() {
    conversationLabel.textContent = conversationId ? "Continuing conversation" : "New conversation";
    conversationLabel.dataset.conversationId = conversationId || "";
  }

  async function errorMessage(response) {
    try {
      const data = await response.json();
      if (data && data.error && data.error.message) return data.error.message;
    } catch (_) {
      /* not JSON */
    }
    return "HTTP " + response.status;
  }

  async function loadModels() {
    try {
      const response = await fetch(apiUrl("/models"), { headers: headers() });
      if (!response.ok) throw new Error(await errorMessage(response));
      const data = await response.json();
      const saved = window.localStorage.getItem("grokproxy.model");
      for (const model of data.data || []) {
        const option = document.createElement("option");
        option.value = option.textContent = model.id;
        modelSelect.appendChild(option);
      }
      if (saved && [...modelSelect.options].some((o) => o.value === saved)) {
        modelSelect.value = saved;
      }
      modelSelect.dataset.loaded = "true";
    } catch (err) {
      setStatus("Could not load the models: " + err.message);
    }
  }

  function addMessage(role, text) {
    const item = document.createElement("li");
    item.className = "message " + role;
    if (role === "assistant") {
      const details = document.createElement("details");
      details.className = "reasoning";
      details.hidden = true;
      details.open = true;
      const summary = document.createElement("summary");
      summary.textContent = "Reasoning";
      const reasoning = document.createElement("div");
      reasoning.className = "reasoning-text";
      details.append(summary, reasoning);
      item.appendChild(details);
    }
    const content = document.createElement("div");
    content.className = "text";
    content.textContent = text || "";
    item.appendChild(content);
    messages.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function showError(item, text) {
    const error = document.createElement("div");
    error.className = "error";
    error.textContent = text;
    item.appendChild(error);
  }

  // Apply one SSE `data:` payload to the reply being shown; returns false at [DONE].
  function applyEvent(data, item) {
    if (data === "[DONE]") return false;
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch (_) {
      return true;
    }
    if (chunk.error) {
      showError(item, chunk.error.message || "The reply failed.");
      return true;
    }
    if (chunk.conversation_id) conversationId = chunk.conversation_id;
    const choice = (chunk.choices || [])[0];
    const delta = choice && choice.delta;
    if (delta) {
      if (delta.reasoning_content) {
        const details = item.querySelector(".reasoning");
        details.hidden = false;
        details.querySelector(".reasoning-text").textContent += delta.reasoning_content;
      }
      if (delta.content) item.querySelector(".text").textContent += delta.content;
      item.scrollIntoView({ block: "end" });
    }
    return true;
  }

  async function readStream(response, item) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        // Comment lines (": keep-alive") and blank separators carry nothing to show.
        if (!line.startsWith("data:")) continue;
        if (!applyEvent(line.slice(5).trimStart(), item)) return;
      }
    }
  }

  async function send(text) {
    addMessage("user", text);
    const item = addMessage("assistant", "");
    item.dataset.state = "streaming";
    const request = {
      model: modelSelect.value,
      stream: true,
      messages: [{ role: "user", content: text }],
    };
    // Continuing: grokproxy keeps the history upstream (and the last reply's id, which becomes
    // the parent), so only the new message is sent.
    if (conversationId) request.conversation_id = conversationId;
    running = new AbortController();
    setBusy(true);
    setStatus("Waiting for the answer…");
    try {
      const response = await fetch(apiUrl("/chat/completions"), {
        method: "POST",
        headers: headers(),
        body: JSON.stringify(request),
        signal: running.signal,
      });
      if (!response.ok) {
        showError(item, await errorMessage(response));
        setStatus("");
        return;
      }
      conversationId = response.headers.get("X-Conversation-Id") || conversationId;
      setStatus("Answering…");
      await readStream(response, item);
      setStatus("");
    } catch (err) {
      if (err.name === "AbortError") {
        setStatus("Stopped.");
      } else {
        showError(item, "The connection failed: " + err.message);
        setStatus("");
      }
    } finally {
      item.dataset.state = "done";
      running = null;
      setBusy(false);
      showConversation();
      prompt.focus();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    prompt.value = "";
    send(text);
  });

  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", () => {
    if (running) running.abort();
  });

  $("new-chat").addEventListener("click", () => {
    if (running) running.abort();
    conversationId = null;
    messages.replaceChildren();
    setStatus("");
    showConversation();
    prompt.focus();
  });

  modelSelect.addEventListener("change", () => {
    window.localStorage.setItem("grokproxy.model", modelSelect.value);
  });

  // The key panel: masked until asked for, copyable either way.
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
    button.addEventListener("click", async () => {
      const text = button.dataset.copy === "api-key" ? apiKey : $(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (_) {
        button.textContent = "Copy failed";
      }
      setTimeout(() => (button.textContent = "Copy"), 1500);
    });
  }

  showConversation();
  loadModels();
})();
