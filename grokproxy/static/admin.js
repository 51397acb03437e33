// The operator console: token batches with live results, bulk account actions, user actions.
// Plain JavaScript, no build step. Every change carries the page's CSRF token as a header.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const CHUNK = 4; // tokens per request: each answer fills its rows as soon as it arrives
const PARALLEL = 3; // requests in flight; the server checks each chunk's tokens concurrently

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const message = data?.error?.message || `the server answered ${response.status}`;
    throw new Error(message);
  }
  return data;
}

function toast(text, isError = false) {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

function preview(token) {
  const bare = token.replace(/^sso=/, "").split(";")[0].trim();
  return bare.length <= 12 ? "*".repeat(bare.length) : `${bare.slice(0, 6)}…${bare.slice(-4)}`;
}

// --- accounts: add tokens ---------------------------------------------------------------------

function tokenLines(text) {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
}

function describe(result) {
  if (result.status === "failed") return `failed (${result.code}): ${result.error}`;
  return `${result.status}: ${result.email}`;
}

async function addTokens() {
  const input = document.getElementById("token-input");
  const list = document.getElementById("add-results");
  const progress = document.getElementById("add-progress");
  const button = document.getElementById("add-tokens");
  const lines = tokenLines(input.value);
  if (!lines.length) {
    toast("Paste at least one token (one per line).", true);
    return;
  }
  button.disabled = true;
  list.replaceChildren();
  const rows = lines.map((line, i) => {
    const item = document.createElement("li");
    item.className = "pending";
    item.dataset.index = String(i);
    const what = document.createElement("code");
    what.textContent = preview(line);
    const outcome = document.createElement("span");
    outcome.className = "outcome";
    outcome.textContent = "waiting…";
    item.append(what, " ", outcome);
    list.append(item);
    return item;
  });
  const counts = { added: 0, updated: 0, unchanged: 0, failed: 0 };
  let done = 0;
  const show = (row, result) => {
    row.className = result.status;
    row.querySelector(".outcome").textContent = describe(result);
    counts[result.status] = (counts[result.status] || 0) + 1;
    done += 1;
    progress.textContent = `${done} of ${lines.length} checked · ${counts.added} added, ` +
      `${counts.updated} updated, ${counts.unchanged} unchanged, ${counts.failed} failed`;
  };
  // A token repeated in the paste is reported here; the server only sees its first copy.
  const first = new Map();
  const queue = [];
  lines.forEach((line, i) => {
    const key = line.replace(/^sso=/, "").split(";")[0].trim();
    if (first.has(key)) {
      show(rows[i], { status: "failed", code: "duplicate", error: `same token as line ${first.get(key) + 1}` });
    } else {
      first.set(key, i);
      queue.push(i);
    }
  });
  const chunks = [];
  for (let i = 0; i < queue.length; i += CHUNK) chunks.push(queue.slice(i, i + CHUNK));
  async function worker() {
    while (chunks.length) {
      const chunk = chunks.shift();
      chunk.forEach((i) => { rows[i].querySelector(".outcome").textContent = "checking…"; });
      try {
        const data = await post("api/tokens", { tokens: chunk.map((i) => lines[i]) });
        data.results.forEach((result) => show(rows[chunk[result.index]], result));
      } catch (error) {
        chunk.forEach((i) => show(rows[i], { status: "failed", code: "request_failed", error: error.message }));
      }
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  button.disabled = false;
  input.value = "";
  const reload = document.createElement("a");
  reload.href = location.href;
  reload.textContent = "Show them in the table";
  progress.append(" · ", reload);
}

function setUpTokens() {
  const button = document.getElementById("add-tokens");
  if (!button) return;
  button.addEventListener("click", addTokens);
  document.getElementById("token-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const input = document.getElementById("token-input");
    const text = await file.text();
    input.value = (input.value.trim() ? input.value.trim() + "\n" : "") + text;
    event.target.value = "";
  });
}

// --- accounts: bulk actions -------------------------------------------------------------------

const VERBS = { disable: "Disable", enable: "Enable", recheck: "Re-check", delete: "Delete" };

function selected() {
  return [...document.querySelectorAll("#accounts input.select:checked")].map((box) => box.value);
}

function setUpBulk() {
  const bar = document.getElementById("bulk");
  if (!bar) return;
  const all = document.getElementById("select-all");
  const count = document.getElementById("selected-count");
  const refresh = () => { count.textContent = `${selected().length} selected`; };
  all.addEventListener("change", () => {
    document.querySelectorAll("#accounts input.select").forEach((box) => { box.checked = all.checked; });
    refresh();
  });
  document.getElementById("accounts").addEventListener("change", refresh);
  bar.querySelectorAll("button[data-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      const list = selected();
      if (!list.length) {
        toast("Select accounts first.", true);
        return;
      }
      const extra = action === "delete" ? " Their users are unbound; this cannot be undone." : "";
      if (!window.confirm(`${VERBS[action]} ${list.length} account(s)?${extra}`)) return;
      bar.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        const data = await post("api/accounts", { action, email_md5_list: list });
        if (action === "recheck") {
          const bad = data.results.filter((r) => !r.ok);
          toast(`${data.results.length - bad.length} ok, ${bad.length} with problems`);
        } else {
          const done = data.disabled || data.enabled || data.deleted || [];
          toast(`${VERBS[action]}: ${done.length} done, ${data.not_found.length} not found`);
        }
        setTimeout(() => location.reload(), 800);
      } catch (error) {
        toast(error.message, true);
        bar.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    });
  });
}

// --- users ------------------------------------------------------------------------------------

function reveal(label, value) {
  const box = document.getElementById("reveal");
  document.getElementById("reveal-label").textContent = label;
  document.getElementById("reveal-value").textContent = value;
  box.hidden = false;
}

function setUpUsers() {
  const table = document.getElementById("users");
  if (!table) return;
  document.getElementById("reveal-close").addEventListener("click", () => {
    document.getElementById("reveal").hidden = true;
    document.getElementById("reveal-value").textContent = "";
  });
  document.getElementById("reveal-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(document.getElementById("reveal-value").textContent);
      toast("Copied.");
    } catch (_) {
      toast("Copy it by hand: the browser refused the clipboard.", true);
    }
  });
  table.querySelectorAll("button[data-user-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      const row = button.closest("tr");
      const name = row.dataset.user;
      const action = button.dataset.userAction;
      if (action === "rotate" && !window.confirm(`Give ${name} a new API key? The current key stops working at once.`)) return;
      if (action === "revoke" && !window.confirm(`Revoke ${name}? Their key, sessions and login links stop working.`)) return;
      try {
        const data = await post("api/users", { action, user_name: name });
        if (action === "rotate") reveal(`New API key of ${name} (shown once):`, data.api_key);
        if (action === "link") {
          // Relative to this page: right behind any proxy prefix without PUBLIC_URL.
          const url = data.login_url_absolute || new URL(".." + data.login_url, location.href).href;
          reveal(`One-time login link of ${name}:`, url);
        }
        if (action === "revoke") {
          toast(`${name} is revoked.`);
          setTimeout(() => location.reload(), 800);
        }
      } catch (error) {
        toast(error.message, true);
      }
    });
  });
  table.querySelectorAll("form.limit").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const row = form.closest("tr");
      const raw = form.elements.daily_limit.value.trim();
      const value = raw === "" ? null : Number(raw);
      try {
        const data = await post("api/users", { action: "limit", user_name: row.dataset.user, daily_limit: value });
        row.querySelector(".effective").textContent = data.daily_limit || "unlimited";
        toast(`Daily limit of ${data.user_name}: ${data.daily_limit || "unlimited"}`);
      } catch (error) {
        toast(error.message, true);
      }
    });
  });
}

// Times arrive as UTC ISO text; show them in the operator's own zone.
function localTimes() {
  document.querySelectorAll("time[datetime]").forEach((node) => {
    const when = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      node.textContent = when.toLocaleString();
      node.title = node.getAttribute("datetime");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpTokens();
  setUpBulk();
  setUpUsers();
  localTimes();
});
