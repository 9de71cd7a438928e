// Colloquy's built-in chat page. Plain JavaScript, no build step. Streams answers with
// fetch and a reader over the SSE body: EventSource cannot send an Authorization header.

const $ = (id) => document.getElementById(id);
const CREDENTIAL = "colloquy.credential";
const PAGE = 30;

const state = {
  credential: sessionStorage.getItem(CREDENTIAL) || "",
  conversationId: null,
  conversationsCursor: null,
  olderCursor: null,
  loadingOlder: false,
  attached: [], // {id, name}
  busy: false,
};

/** An error from the API, from its envelope. */
class ApiError extends Error {
  constructor(status, body, headers) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.details = error.details || {};
    this.requestId = error.request_id || headers.get("x-request-id") || "";
    this.retryAfter = Number(headers.get("retry-after")) || this.details.retry_after_secs || 0;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", `Bearer ${state.credential}`);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON: the status says enough */ }
    throw new ApiError(response.status, body, response.headers);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

/** A sentence for an error, saying what to do where there is something to do. */
function describe(error) {
  if (!(error instanceof ApiError)) return `Network error: ${error.message}`;
  switch (error.code) {
    case "rate_limited":
      return `Rate limited: too many requests. Try again in ${error.retryAfter || 1} s.`;
    case "budget_exceeded": {
      const left = error.details.remaining_nano_usd;
      const usd = left === undefined ? "" : ` ($${(left / 1e9).toFixed(4)} left this month)`;
      return `Budget exceeded: this call does not fit your monthly budget${usd}.`;
    }
    case "unauthorized":
      return "Your token or key is not valid (or has expired). Sign in again.";
    default:
      return `${error.message} (${error.code}${error.requestId ? `, request ${error.requestId}` : ""})`;
  }
}

function setStatus(text) {
  $("status").textContent = text;
}

/** Read out once by screen readers (the message list itself is not a live region). */
function announce(text) {
  $("announcer").textContent = text;
}

// --- Signing in -------------------------------------------------------------------------

async function signIn(credential) {
  state.credential = credential.trim();
  const specialists = await json("/v1/specialists");
  sessionStorage.setItem(CREDENTIAL, state.credential);
  const select = $("specialist");
  select.replaceChildren(
    ...specialists.data.map((s) => {
      const option = new Option(s.name, s.id);
      option.title = s.description || "";
      return option;
    }),
  );
  $("signin").hidden = true;
  $("app").hidden = false;
  // Ready to type at once; the conversation list fills in beside it.
  $("composer-input").focus();
  await loadConversations(true);
}

function signOut() {
  sessionStorage.removeItem(CREDENTIAL);
  state.credential = "";
  location.reload();
}

async function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  const error = $("signin-error");
  error.hidden = !message;
  error.textContent = message || "";
  // The development token route exists only in development.
  try {
    const probe = await fetch("/dev/token", { method: "HEAD" });
    $("dev-token").hidden = !probe.ok;
  } catch {
    $("dev-token").hidden = true;
  }
  $("credential").focus();
}

// --- Conversations ----------------------------------------------------------------------

function conversationItem(c) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.id = c.id;
  button.textContent = c.title || "Untitled conversation";
  if (c.id === state.conversationId) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => openConversation(c.id));
  li.append(button);
  return li;
}

async function loadConversations(reset) {
  const list = $("conversations");
  const query = new URLSearchParams({ limit: PAGE });
  if (!reset && state.conversationsCursor) query.set("cursor", state.conversationsCursor);
  const page = await json(`/v1/conversations?${query}`);
  if (reset) list.replaceChildren();
  list.append(...page.data.map(conversationItem));
  state.conversationsCursor = page.next_cursor;
  $("more-conversations").hidden = !page.has_more;
}

function markCurrent() {
  for (const b of $("conversations").querySelectorAll("button")) {
    if (b.dataset.id === state.conversationId) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

function clearMessages() {
  const older = $("older");
  $("messages").replaceChildren(older);
  older.hidden = true;
}

function newConversation() {
  state.conversationId = null;
  state.olderCursor = null;
  clearMessages();
  $("conversation-title").textContent = "New conversation";
  $("specialist").disabled = false;
  markCurrent();
  closeSidebar();
  $("composer-input").focus();
}

/** Opens a conversation with its newest page; it keeps the specialist it was started with. */
async function openConversation(id) {
  state.conversationId = id;
  state.olderCursor = null;
  clearMessages();
  markCurrent();
  closeSidebar();
  try {
    const detail = await json(`/v1/conversations/${id}?limit=${PAGE}`);
    if (id !== state.conversationId) return;
    $("conversation-title").textContent = detail.title || "Untitled conversation";
    const select = $("specialist");
    const known = [...select.options].some((o) => o.value === detail.specialist_id);
    if (known) select.value = detail.specialist_id;
    // Another specialist than the conversation's would change its prompt and model midway;
    // one this user may no longer use, or none recorded, is chosen anew.
    select.disabled = known;
    if (detail.specialist_id && !known) {
      setStatus("This conversation's specialist is not available to you: pick another to continue.");
    }
    showOlder(detail.messages);
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  } catch (error) {
    setStatus(describe(error));
  }
  $("composer-input").focus();
}

/** A page of messages (newest first, as the API gives them) above what is shown, keeping
 *  the reader's place. */
function showOlder(page) {
  const box = $("messages");
  const before = box.scrollHeight - box.scrollTop;
  const anchor = $("older").nextSibling;
  for (const m of page.data.slice().reverse()) {
    box.insertBefore(messageElement(m.role, m.content, m), anchor);
  }
  box.scrollTop = box.scrollHeight - before;
  state.olderCursor = page.next_cursor;
  $("older").hidden = !page.has_more;
}

/** The next older page, when the reader scrolls up to the top or asks for it. */
async function loadOlder() {
  if (state.loadingOlder || !state.olderCursor) return;
  state.loadingOlder = true;
  try {
    const id = state.conversationId;
    const query = new URLSearchParams({ limit: PAGE, before: state.olderCursor });
    const page = await json(`/v1/conversations/${id}/messages?${query}`);
    if (id === state.conversationId) showOlder(page);
  } catch (error) {
    setStatus(describe(error));
  } finally {
    state.loadingOlder = false;
  }
}

function messageElement(role, content, stored) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = content;
  div.append(text);
  if (stored && role === "assistant" && stored.output_tokens != null) {
    const note = document.createElement("span");
    note.className = "meta";
    note.textContent = `${stored.input_tokens} in / ${stored.output_tokens} out tokens`;
    div.append(note);
  }
  if (stored && stored.status && stored.status !== "complete") {
    div.classList.add("failed");
    const note = document.createElement("span");
    note.className = "meta";
    note.textContent = `(${stored.status})`;
    div.append(note);
  }
  return div;
}

// --- Search -----------------------------------------------------------------------------

/** The server's snippet is HTML-escaped text with <mark> around matches: only those two
 *  kinds of node are copied, so nothing else in it can become markup. */
function snippetNodes(snippet) {
  const doc = new DOMParser().parseFromString(`<p>${snippet}</p>`, "text/html");
  const out = [];
  for (const node of doc.body.firstChild.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) out.push(document.createTextNode(node.textContent));
    else if (node.nodeName === "MARK") {
      const mark = document.createElement("mark");
      mark.textContent = node.textContent;
      out.push(mark);
    }
  }
  return out;
}

async function search(q) {
  const results = $("search-results");
  if (!q.trim()) {
    $("search-section").hidden = true;
    results.replaceChildren();
    return;
  }
  try {
    const page = await json(`/v1/search?${new URLSearchParams({ q, limit: 20 })}`);
    results.replaceChildren(
      ...page.data.map((hit) => {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.append(hit.conversation_title || "Untitled conversation");
        const snippet = document.createElement("span");
        snippet.className = "snippet";
        snippet.append(...snippetNodes(hit.snippet));
        button.append(snippet);
        button.addEventListener("click", () => openConversation(hit.conversation_id));
        li.append(button);
        return li;
      }),
    );
    if (!page.data.length) {
      const li = document.createElement("li");
      li.textContent = "No messages match.";
      results.append(li);
    }
    $("search-section").hidden = false;
  } catch (error) {
    setStatus(describe(error));
  }
}

// --- Files ------------------------------------------------------------------------------

async function attach(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  setStatus("Uploading…");
  try {
    const uploaded = await json("/v1/files", { method: "POST", body: form });
    state.attached.push(...uploaded.data.map((f) => ({ id: f.id, name: f.name })));
    renderAttachments();
    setStatus("");
  } catch (error) {
    setStatus(describe(error));
  } finally {
    $("file").value = "";
  }
}

function renderAttachments() {
  $("attachments").replaceChildren(
    ...state.attached.map((f, i) => {
      const li = document.createElement("li");
      li.append(f.name, " ");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "quiet";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${f.name}`);
      remove.addEventListener("click", () => {
        state.attached.splice(i, 1);
        renderAttachments();
      });
      li.append(remove);
      return li;
    }),
  );
}

// --- Sending and streaming --------------------------------------------------------------

/** Server-Sent Events from a fetch body: yields {event, data, id} as each event completes. */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let id;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = val;
        else if (field === "id") id = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")), id };
    }
  }
}

function meta(done) {
  const cost = done.estimated_cost_usd ? ` · $${done.estimated_cost_usd.toFixed(6)}` : " · $0";
  const ttft = done.ttft_ms == null ? "" : ` · first token ${done.ttft_ms} ms`;
  return `${done.input_tokens} in / ${done.output_tokens} out tokens${done.usage_estimated ? " (estimated)" : ""}${cost} · ${done.latency_ms} ms${ttft}`;
}

function failBubble(bubble, message) {
  bubble.classList.add("failed");
  const note = document.createElement("span");
  note.className = "error";
  note.setAttribute("role", "alert");
  note.textContent = message;
  bubble.append(note);
}

/** After a connection lost mid-answer, asks for the rest (a few tries, further apart each
 *  time). When the server no longer has the stream, the stored answer is shown instead. */
async function pickUp(ended, messageId, lastId, take) {
  for (let attempt = 0; !ended() && messageId && attempt < 4; attempt++) {
    setStatus("Connection lost: picking the answer up again…");
    await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
    try {
      const rest = await api(`/v1/chat/stream/${messageId}`, {
        headers: { Accept: "text/event-stream", "Last-Event-ID": lastId() },
      });
      for await (const event of events(rest.body)) take(event);
    } catch (error) {
      if (error instanceof ApiError && error.code === "stream_not_found") {
        // Ended a while ago, or on another server: the conversation has the stored answer.
        await openConversation(state.conversationId);
        return;
      }
      if (error instanceof ApiError) throw error;
      // The network again: try once more.
    }
  }
  if (!ended()) throw new Error("the connection was lost; reopen the conversation for the answer");
}

async function send(message) {
  const box = $("messages");
  const wasNew = !state.conversationId;
  box.append(messageElement("user", message));
  const bubble = messageElement("assistant", "");
  bubble.setAttribute("aria-busy", "true");
  box.append(bubble);
  box.scrollTop = box.scrollHeight;
  const text = bubble.querySelector(".text");
  const body = {
    specialist_id: $("specialist").value,
    message,
    file_ids: state.attached.map((f) => f.id),
  };
  if (state.conversationId) body.conversation_id = state.conversationId;
  setStatus("Thinking…");
  // Where the answer is: its message id (from `start`) and the last event's id, which is how
  // much of it has arrived; a lost connection is picked up from there.
  let messageId = null;
  let lastId = "0";
  let ended = false;
  const take = ({ event, data, id }) => {
    if (id !== undefined) lastId = id;
    if (event === "start") {
      state.conversationId = data.conversation_id;
      messageId = data.message_id;
      $("specialist").disabled = true;
      setStatus(`Answering with ${data.model}…`);
    } else if (event === "delta") {
      text.textContent += data.content;
      box.scrollTop = box.scrollHeight;
    } else if (event === "done") {
      ended = true;
      const note = document.createElement("span");
      note.className = "meta";
      note.textContent = meta(data);
      bubble.append(note);
      setStatus("");
      announce(`Answer: ${text.textContent}`);
    } else if (event === "error") {
      ended = true;
      failBubble(bubble, `${data.message} (${data.code})`);
      setStatus("The answer stopped early.");
    }
  };
  try {
    const response = await api("/v1/chat/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    state.attached = [];
    renderAttachments();
    try {
      for await (const event of events(response.body)) take(event);
    } catch (error) {
      if (!messageId) throw error; // nothing to pick up
    }
    await pickUp(() => ended, messageId, () => lastId, take);
  } catch (error) {
    const sentence = describe(error);
    failBubble(bubble, sentence);
    setStatus(sentence);
  } finally {
    bubble.removeAttribute("aria-busy");
  }
  if (wasNew && state.conversationId) {
    await loadConversations(true).catch(() => {});
    markCurrent();
  }
}

// --- Wiring -----------------------------------------------------------------------------

function closeSidebar() {
  $("sidebar").classList.remove("open");
  $("toggle-sidebar").setAttribute("aria-expanded", "false");
}

function wire() {
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await signIn($("credential").value);
    } catch (error) {
      showSignIn(describe(error));
    }
  });
  $("dev-token").addEventListener("click", async () => {
    try {
      const response = await fetch("/dev/token");
      const { token } = await response.json();
      await signIn(token);
    } catch (error) {
      showSignIn(describe(error));
    }
  });
  $("signout").addEventListener("click", signOut);
  $("new-conversation").addEventListener("click", newConversation);
  $("more-conversations").addEventListener("click", () => loadConversations(false));
  $("older").addEventListener("click", () => loadOlder());
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 40) loadOlder();
  });
  $("toggle-sidebar").addEventListener("click", () => {
    const open = $("sidebar").classList.toggle("open");
    $("toggle-sidebar").setAttribute("aria-expanded", String(open));
    if (open) $("search").focus();
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search($("search").value);
  });
  $("search").addEventListener("search", () => search($("search").value));
  $("file").addEventListener("change", () => attach([...$("file").files]));
  const input = $("composer-input");
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const message = input.value.trim();
    if (!message || state.busy) return;
    state.busy = true;
    $("send").disabled = true;
    input.value = "";
    try {
      await send(message);
    } finally {
      state.busy = false;
      $("send").disabled = false;
      input.focus();
    }
  });
}

wire();
if (state.credential) {
  signIn(state.credential).catch((error) => showSignIn(describe(error)));
} else {
  showSignIn("");
}
