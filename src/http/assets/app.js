// PowerPulse dashboard: plain ES module, no dependencies, no network beyond this server.

const $ = (sel, root = document) => root.querySelector(sel);
const FINAL = new Set(["completed", "failed", "cancelled"]);
const state = { role: null, selected: null, cursors: [null], page: 0, following: new Set(), sorts: {}, topics: new Set(), agents: new Set(), uploadNames: new Map() };

// ---- API ---------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem("powerpulse-token");
}

function askToken() {
  const t = window.prompt("This PowerPulse server needs an access token:");
  if (t) sessionStorage.setItem("powerpulse-token", t.trim());
  return Boolean(t);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(path, options = {}, retried = false, busy = 0) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new Error("Cannot reach the PowerPulse server. Is it still running?");
  }
  if (response.status === 401 && !retried && askToken()) return api(path, options, true, busy);
  // The server is at its cap of uploads or streams: wait as told, a few times.
  if (response.status === 429 && busy < 10) {
    const seconds = Number(response.headers.get("Retry-After")) || 1;
    await sleep(seconds * 1000);
    return api(path, options, retried, busy + 1);
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      detail = body.detail || body.error || detail;
    } catch { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

// ---- who is using it ---------------------------------------------------------------

// Each role may do what the one before may, and more (the server enforces it;
// the page only shows what the role may do).
const RANKS = { viewer: 0, operator: 1, admin: 2 };
const allows = (role) => state.role != null && RANKS[state.role] >= RANKS[role];

async function loadIdentity() {
  const me = await json("/api/whoami");
  state.role = me.role;
  document.body.dataset.role = me.role;
  $("#who").textContent = me.token_required ? `${me.name} · ${me.role}` : "";
  $("#upload-panel").hidden = !allows("operator");
  for (const b of document.querySelectorAll("button.cancel")) b.hidden ||= !allows("operator");
  $("#audit").hidden = !allows("admin");
}

// The audit log's newest entries (admins only).
async function loadAudit() {
  if (!allows("admin")) return;
  const page = await json("/api/audit?limit=50");
  const rows = page.items.map((e) =>
    el("tr", { class: e.status >= 200 && e.status < 300 ? "" : "refused" },
      el("td", {}, when(e.at)),
      el("td", {}, `${e.who} (${e.role})`),
      el("td", {}, e.action.replace("_", " ")),
      el("td", {}, String(e.status)),
      el("td", {}, e.target || e.upload_id || "")));
  $("#audit tbody").replaceChildren(...rows);
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function guarded(action) {
  try {
    showError("");
    await action();
  } catch (e) {
    showError(e.message);
  }
}

// ---- helpers -----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

const fmt = (n) => Number(n || 0).toLocaleString();
const pct = (n) => `${Math.round(Number(n || 0))}%`;
const when = (iso) => new Date(iso).toLocaleString();

function eta(seconds) {
  if (seconds == null) return "—";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
}

// ---- live uploads ------------------------------------------------------------------

function card(id) {
  let c = $(`[data-upload="${id}"]`);
  if (!c) {
    c = el("div", { class: "upload-card", "data-upload": id },
      el("div", { class: "title" }, el("span", { class: "name" }), el("span", { class: "stage" })),
      el("progress", { max: "100", value: "0" }),
      el("div", { class: "stats" }),
      el("button", { type: "button", class: "cancel", onclick: () => guarded(() => api(`/api/progress/${id}`, { method: "DELETE" })) }, "Cancel"));
    $("#active").prepend(c);
  }
  return c;
}

function render(s) {
  const c = card(s.upload_id);
  $(".name", c).textContent = s.filename;
  $(".stage", c).textContent = s.stage;
  const bar = $("progress", c);
  bar.value = s.percent;
  bar.textContent = pct(s.percent);
  bar.setAttribute("aria-label", `${s.filename}: ${pct(s.percent)}`);
  const llm = s.llm || {};
  const stats = [
    ["progress", pct(s.percent)],
    ["conversations", fmt(s.total_conversations)],
    ["analysed", fmt(s.analyzed)],
    ["already processed", fmt(s.skipped)],
    ["failed", fmt(s.failed)],
    ["autoresponses filtered", fmt(s.autoresponses_filtered)],
    ["LLM requests", fmt(llm.requests)],
    ["429s", fmt(llm.rate_limited)],
    ["tokens", fmt(llm.tokens)],
    ["cost", `$${Number(llm.cost_usd || 0).toFixed(4)}`],
    ["cached tokens", fmt(llm.cached_tokens)],
    ["ETA", FINAL.has(s.stage) ? "—" : eta(s.eta_seconds)],
  ];
  if (s.batch) {
    const b = s.batch;
    stats.push(["batch", `${b.status} (round ${b.round}): ${fmt(b.completed)}/${fmt(b.total)} done, ${fmt(b.failed)} failed`]);
  }
  $(".stats", c).replaceChildren(...stats.map(([k, v]) => el("span", { "data-stat": k }, `${k} `, el("b", {}, v))));
  if (s.provider) {
    // The provider is down: the upload waits. Times in the reader's own zone.
    const hm = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const p = s.provider;
    $(".stats", c).append(el("span", { class: "outage", role: "status" },
      `provider unavailable: ${p.reason} since ${hm(p.since)}, next try ${hm(p.next_try)}`));
  }
  if (s.errors && s.errors.length) $(".stats", c).append(el("span", { class: "errors" }, `errors: ${s.errors.slice(-3).join("; ")}`));
  $(".cancel", c).hidden = FINAL.has(s.stage) || !allows("operator");
}

// Server-Sent Events over fetch (EventSource cannot send the bearer token).
async function follow(id) {
  if (state.following.has(id)) return;
  state.following.add(id);
  let last = null;
  try {
    const response = await api(`/api/progress/${id}/events`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").find((l) => l.startsWith("data: "));
        if (data) {
          last = JSON.parse(data.slice(6));
          render(last);
        }
      }
    }
    if (last && FINAL.has(last.stage)) {
      await loadUploads();
      await loadInsights();
      if (state.selected === id) await select(id);
    }
  } catch (e) {
    showError(e.message);
  } finally {
    state.following.delete(id);
  }
  // The server closes a stream that saw no change for a while: follow on.
  if (last && !FINAL.has(last.stage)) setTimeout(() => follow(id), 1000);
}

// ---- preview, then upload ---------------------------------------------------------
// A dropped file is first read by the server without being stored
// (POST /api/preview): the operator sees the format, where each field comes
// from, who is taken for the business side and the first conversations, can
// correct the format and the business side's senders, then starts the upload
// with those choices.

const queue = [];
let pending = null;

function enqueue(files) {
  queue.push(...files);
  if (!pending) guarded(nextPreview);
}

async function nextPreview() {
  const file = queue.shift();
  const form = $("#preview");
  if (!file) {
    pending = null;
    form.hidden = true;
    return;
  }
  pending = { file, format: "", agents: null };
  form.reset();
  try {
    await preview();
  } catch (e) {
    // An unreadable file: say why (the caller shows it) and go on.
    pending = null;
    form.hidden = true;
    if (queue.length) setTimeout(() => guarded(nextPreview));
    throw e;
  }
}

// The query an upload or preview of the pending file carries.
function readingQuery() {
  const q = new URLSearchParams({ filename: pending.file.name });
  if (pending.format) q.set("format", pending.format);
  if (pending.agents) q.set("agents", pending.agents.join("\n"));
  return q;
}

async function preview() {
  const p = await json(`/api/preview?${readingQuery()}`, {
    method: "POST",
    body: pending.file,
    headers: { "Content-Type": "application/octet-stream" },
  });
  pending.preview = p;
  const form = $("#preview");
  $("#preview-title").textContent = `${p.file}: read as ${p.format}${p.files ? ` (${fmt(p.files)} files)` : ""}`;
  const c = p.counts;
  const leftOut = c.left_out.map((l) => `${fmt(l.count)} ${l.kind}`).join(", ");
  $("#preview-counts").textContent = `${fmt(c.conversations)} conversations, ${fmt(c.messages)} messages: ` +
    `${fmt(c.customer_messages)} customer, ${fmt(c.agent_messages)} business, ${fmt(c.bot_messages)} bot; ` +
    `${fmt(c.autoresponses)} autoresponses not analysed` +
    (c.guessed_roles ? `; the role of ${fmt(c.guessed_roles)} messages is a guess` : "") +
    (leftOut ? `; left out: ${leftOut}` : "");
  form.elements.format.value = pending.format;
  $("#preview-fields tbody").replaceChildren(...p.fields.map((f) => el("tr", {}, el("td", {}, f.field), el("td", {}, f.source))));
  $("#preview-roles-note").textContent = p.roles_from_names
    ? "The export does not say who speaks for the business: tick its senders (the others are customers), then check again or start."
    : "Roles come from the export itself.";
  $("#preview-senders tbody").replaceChildren(...p.senders.map((s) => el("tr", {},
    ...(p.roles_from_names
      ? [el("td", {}, el("input", { type: "checkbox", "aria-label": `${s.name} speaks for the business`, "data-sender": s.name, ...(s.role === "agent" ? { checked: "" } : {}) }))]
      : []),
    el("td", {}, s.name), el("td", {}, fmt(s.messages)), el("td", {}, s.role))));
  $("#preview-more-agents").hidden = !p.roles_from_names;
  $("#preview-senders th").hidden = !p.roles_from_names;
  $("#preview-conversations").replaceChildren(...p.conversations.map((conv) => {
    const box = el("div", { class: "transcript" });
    showTranscript(box, { conversation_id: conv.id, messages: conv.messages.map((m) => ({ ...m, text: m.sender ? `${m.sender}: ${m.text}` : m.text })) },
      conv.more_messages ? el("p", {}, `… and ${fmt(conv.more_messages)} more messages`) : "");
    box.querySelector(".analysis").remove();
    return box;
  }));
  $("#preview-warnings").replaceChildren(...p.warnings.map((w) => el("li", {}, w)));
  form.hidden = false;
  form.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// The operator's choices on the form: the format, and (when the export
// does not say) the business side's senders, all of them.
function readChoices() {
  const form = $("#preview");
  pending.format = form.elements.format.value;
  if (!pending.preview || !pending.preview.roles_from_names) return;
  const ticked = [...form.querySelectorAll("input[data-sender]")].filter((b) => b.checked).map((b) => b.dataset.sender);
  const more = form.elements.agents.value.split("\n").map((l) => l.trim()).filter(Boolean);
  const detected = pending.preview.senders.filter((s) => s.role === "agent").map((s) => s.name);
  const changed = more.length > 0 || ticked.length !== detected.length || ticked.some((n) => !detected.includes(n));
  // A list the operator changed, or confirmed where the roles were a guess,
  // is the whole business side; otherwise the server tells it from the data.
  const guessed = pending.preview.counts.guessed_roles > 0;
  if (changed || guessed || pending.agents) pending.agents = [...ticked, ...more];
}

async function startUpload() {
  readChoices();
  const { file } = pending;
  // A non-simple Content-Type: the server refuses raw uploads that another
  // site's page could send without a CORS preflight.
  const accepted = await json(`/api/upload?${readingQuery()}`, {
    method: "POST",
    body: file,
    headers: { "Content-Type": "application/octet-stream" },
  });
  render({ upload_id: accepted.upload_id, filename: accepted.filename, stage: "parsing", percent: 0, llm: {} });
  follow(accepted.upload_id);
  await loadUploads();
  await nextPreview();
}

// ---- past uploads ------------------------------------------------------------------

async function loadUploads() {
  const uploads = await json("/api/uploads");
  state.uploadNames = new Map(uploads.map((u) => [u.id, u.filename]));
  const rows = uploads.map((u) => {
    const row = el("tr", { "data-upload": u.id, onclick: () => guarded(() => select(u.id)) },
      el("td", {}, u.filename), el("td", {}, when(u.created_at)), el("td", {}, u.status), el("td", {}, fmt(u.counts.conversations)));
    if (u.id === state.selected) row.classList.add("selected");
    if (!FINAL.has(u.status)) follow(u.id);
    return row;
  });
  $("#uploads tbody").replaceChildren(...rows);
}

// ---- one upload: summary, charts, conversations ------------------------------------

function bars(values, labels, classes) {
  const w = 300, h = 160, pad = 22, max = Math.max(1, ...values);
  const bw = (w - pad) / values.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", labels.map((l, i) => `${l}: ${values[i]}`).join(", "));
  values.forEach((v, i) => {
    const bh = ((h - 2 * pad) * v) / max;
    const x = pad / 2 + i * bw + 4, y = h - pad - bh;
    svg.insertAdjacentHTML("beforeend",
      `<rect class="${classes[i]}" x="${x}" y="${y}" width="${bw - 8}" height="${bh}"></rect>` +
      `<text x="${x + (bw - 8) / 2}" y="${y - 4}" text-anchor="middle">${v}</text>` +
      `<text x="${x + (bw - 8) / 2}" y="${h - 6}" text-anchor="middle">${labels[i]}</text>`);
  });
  return svg;
}

// A line over `points` ([label, value]) on the scale lo..hi (sentiment: -1..1);
// with `onPoint`, each point is a button calling it with its label.
function line(points, lo = -1, hi = 1, onPoint = null) {
  const w = 300, h = 160, pad = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", points.map(([d, v]) => `${d}: ${v.toFixed(2)}`).join(", "));
  const x = (i) => pad + (points.length === 1 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (points.length - 1));
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / (hi - lo);
  const mid = (lo + hi) / 2;
  const tick = (v) => (v > 0 && lo < 0 ? `+${v}` : String(v).replace("-", "−"));
  const path = points.map(([, v], i) => `${i ? "L" : "M"}${x(i)},${y(v)}`).join(" ");
  svg.insertAdjacentHTML("beforeend",
    `<line x1="${pad}" x2="${w - pad}" y1="${y(mid)}" y2="${y(mid)}" stroke="#bbb" stroke-dasharray="3 3"></line>` +
    `<text x="2" y="${pad}">${tick(hi)}</text><text x="2" y="${y(mid) + 4}">${tick(mid)}</text><text x="2" y="${h - pad + 8}">${tick(lo)}</text>` +
    `<path d="${path}" fill="none" stroke="#1f5fbf" stroke-width="2"></path>` +
    points.map(([d, v], i) => `<circle cx="${x(i)}" cy="${y(v)}" r="3" fill="#1f5fbf" data-date="${d}"><title>${d}: ${v.toFixed(2)}</title></circle>`).join("") +
    `<text x="${pad}" y="${h - 4}">${points[0][0]}</text><text x="${w - pad}" y="${h - 4}" text-anchor="end">${points[points.length - 1][0]}</text>`);
  if (onPoint) clickable(svg, "circle", (node) => onPoint(node.dataset.date));
  return svg;
}

// Makes each `selector` node of an SVG a button: click, Enter or Space.
function clickable(svg, selector, action) {
  for (const node of svg.querySelectorAll(selector)) {
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "button");
    node.classList.add("clickable");
    const go = () => guarded(() => action(node));
    node.addEventListener("click", go);
    node.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
  }
}

async function select(id) {
  state.selected = id;
  state.cursors = [null];
  state.page = 0;
  for (const row of document.querySelectorAll("#uploads tbody tr")) row.classList.toggle("selected", row.dataset.upload === id);
  const [record, summary] = await Promise.all([json(`/api/uploads/${id}`), json(`/api/uploads/${id}/summary`)]);
  $("#details").hidden = false;
  $("#details-title").textContent = `${record.filename} — ${record.status}`;
  const numbers = [
    ["conversations", fmt(summary.conversations)],
    ["analysed", fmt(summary.analyzed)],
    ["already processed", fmt(summary.skipped_already_processed)],
    ["failed", fmt(summary.failed)],
    ["average satisfaction", summary.average_satisfaction == null ? "—" : summary.average_satisfaction.toFixed(2)],
    ["resolved", summary.resolved_rate == null ? "—" : pct(summary.resolved_rate * 100)],
    ["LLM tokens", fmt(summary.llm.tokens)],
    ["cost", `$${Number(summary.llm.cost_usd || 0).toFixed(4)}`],
  ];
  $("#summary-numbers").replaceChildren(...numbers.map(([k, v]) => el("div", {}, el("b", {}, v), k)));
  const s = summary.sentiment;
  $("#chart-sentiment").replaceChildren(bars([s.positive, s.neutral, s.negative], ["positive", "neutral", "negative"], ["bar-positive", "bar-neutral", "bar-negative"]));
  $("#chart-satisfaction").replaceChildren(bars(summary.satisfaction_histogram, ["1", "2", "3", "4", "5"], Array(5).fill("bar")));
  const days = Object.entries(summary.sentiment_by_day || {});
  $("#figure-time").hidden = days.length === 0;
  if (days.length) $("#chart-time").replaceChildren(line(days));
  const named = (rows, key) => rows.map((r) => r[key]).filter((v) => v != null);
  options($("#filters [name=topic]"), named(summary.topics, "topic"));
  options($("#filters [name=agent]"), named(summary.agents, "agent"));
  options($("#filters [name=language]"), named(summary.languages, "language"));
  $("#transcript").hidden = true;
  await loadConversations();
}

// Fills a <select> with "any" and `values`, keeping its choice when it is among them.
function options(select, values) {
  const chosen = select.value;
  const all = [...new Set(values)].sort();
  select.replaceChildren(el("option", { value: "" }, "any"), ...all.map((v) => el("option", { value: v }, v)));
  select.value = all.includes(chosen) ? chosen : "";
}

async function loadConversations() {
  const id = state.selected;
  const params = new URLSearchParams({ limit: "25" });
  for (const [k, v] of new FormData($("#filters"))) if (v) params.set(k, v);
  const cursor = state.cursors[state.page];
  if (cursor) params.set("cursor", cursor);
  const page = await json(`/api/uploads/${id}/conversations?${params}`);
  state.cursors[state.page + 1] = page.next_cursor;
  const rows = page.items.map((r) => {
    const a = r.analysis;
    const label = a ? a.sentiment.label : r.status;
    return el("tr", { "data-conversation": r.conversation_id, onclick: () => guarded(() => transcript(r.conversation_id)) },
      el("td", {}, r.conversation_id),
      el("td", { class: `label-${label}` }, a ? `${label} (${a.sentiment.score.toFixed(2)})` : `— ${r.status}`),
      el("td", {}, a ? `${a.satisfaction.score}/5 ${a.satisfaction.label}` : "—"),
      el("td", {}, a && a.resolved != null ? (a.resolved ? "yes" : "no") : "—"),
      el("td", {}, a ? a.summary : r.error || ""),
      el("td", {}, (a && a.topic) || "—"),
      el("td", {}, r.agent || "—"),
      el("td", {}, r.language || "—"));
  });
  $("#conversations tbody").replaceChildren(...rows);
  $("#page-label").textContent = `page ${state.page + 1}`;
  $("#prev-page").disabled = state.page === 0;
  $("#next-page").disabled = !page.next_cursor;
}

async function transcript(conversationId) {
  const d = await json(`/api/uploads/${state.selected}/conversations/${encodeURIComponent(conversationId)}`);
  showTranscript($("#transcript"), d);
}

// A conversation's messages (autoresponses greyed) and its analysis, in `box`.
function showTranscript(box, d, ...extra) {
  const who = { customer: "Customer", agent: "Agent", bot: "Bot" };
  const messages = d.messages.map((m) =>
    el("div", { class: `msg ${m.role}${m.autoresponse ? " autoresponse" : ""}` },
      el("span", { class: "who" }, `${who[m.role] || m.role}${m.autoresponse ? " (autoresponse, not analysed)" : ""}`),
      m.text));
  const a = d.analysis;
  const analysis = a
    ? el("p", { class: "analysis" }, `Sentiment ${a.sentiment.label} (${a.sentiment.score.toFixed(2)}), satisfaction ${a.satisfaction.score}/5 (${a.satisfaction.label}), resolved: ${a.resolved == null ? "unknown" : a.resolved ? "yes" : "no"}. ${a.summary}`)
    : el("p", { class: "analysis" }, d.record && d.record.error ? `Not analysed: ${d.record.error}` : "Not analysed yet.");
  const redacted = d.redacted
    ? [el("p", { class: "note" }, "Personal data (names, phone numbers, e-mail addresses, ids…) is shown as placeholders: your role may not see it.")]
    : [];
  box.replaceChildren(el("h3", {}, `Conversation ${d.conversation_id}`), ...extra, ...redacted, analysis, ...messages);
  box.hidden = false;
  box.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function exportAs(format) {
  const response = await api(`/api/uploads/${state.selected}/export?format=${format}`);
  const blob = await response.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: `powerpulse-${state.selected}.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
}

// ---- insights across uploads -------------------------------------------------------

// Sentiment counts per day as stacked bars (positive, neutral, negative);
// each day's bar is a button calling `onDay` with its date.
function stacked(days, onDay) {
  const w = 300, h = 160, pad = 22;
  const max = Math.max(1, ...days.map((d) => d.conversations));
  const bw = (w - 2 * pad) / days.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", days.map((d) =>
    `${d.date}: ${d.sentiment.positive} positive, ${d.sentiment.neutral} neutral, ${d.sentiment.negative} negative`).join("; "));
  days.forEach((d, i) => {
    let top = h - pad;
    // The whole column answers a click, not only its thin bars.
    let bars = `<rect class="hit" x="${pad + i * bw}" y="${pad}" width="${bw}" height="${h - 2 * pad}"></rect>`;
    for (const k of ["negative", "neutral", "positive"]) {
      const bh = ((h - 2 * pad) * d.sentiment[k]) / max;
      top -= bh;
      bars += `<rect class="bar-${k}" x="${pad + i * bw + bw * 0.1}" y="${top}" width="${Math.max(1, bw * 0.8)}" height="${bh}"><title>${d.date}: ${d.sentiment[k]} ${k}</title></rect>`;
    }
    svg.insertAdjacentHTML("beforeend",
      `<g class="day" data-date="${d.date}" data-conversations="${d.conversations}" aria-label="${d.date}: ${d.conversations} conversations, show them">${bars}</g>`);
  });
  clickable(svg, "g.day", (g) => onDay(g.dataset.date));
  svg.insertAdjacentHTML("beforeend",
    `<text x="${pad}" y="${h - 4}">${days[0].date}</text><text x="${w - pad}" y="${h - 4}" text-anchor="end">${days[days.length - 1].date}</text>` +
    `<text x="2" y="${pad}">${max}</text>`);
  return svg;
}

const share = (n, total) => (total ? (100 * n) / total : 0);

// A number with a bar of `fraction` (0..1) beside it.
function meter(text, fraction, kind = "") {
  const bar = el("i");
  // A style property, not a style attribute: the page's CSP allows no inline styles.
  bar.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 48)}px`;
  return el("span", { class: `meter ${kind}` }, bar, text);
}

// Breakdown columns: header, sort value, cell.
const COLUMNS = [
  ["Conversations", (r) => r.conversations, (r, max) => meter(fmt(r.conversations), r.conversations / max)],
  ["Positive", (r) => share(r.sentiment.positive, r.conversations), (r) => pct(share(r.sentiment.positive, r.conversations))],
  ["Negative", (r) => share(r.sentiment.negative, r.conversations), (r) => meter(pct(share(r.sentiment.negative, r.conversations)), r.sentiment.negative / Math.max(1, r.conversations), "neg")],
  ["Satisfaction", (r) => r.average_satisfaction ?? 0, (r) => r.average_satisfaction == null ? "—" : meter(r.average_satisfaction.toFixed(2), (r.average_satisfaction - 1) / 4, "sat")],
  ["Resolved", (r) => r.resolved_rate ?? -1, (r) => (r.resolved_rate == null ? "—" : pct(r.resolved_rate * 100))],
];

// A sortable table of topics or agents; a row opens its conversations.
function breakdown(table, key, rows) {
  const sort = state.sorts[table.id] || (state.sorts[table.id] = { column: 0, descending: true });
  const value = (r, c) => (c === -1 ? r[key] ?? "" : COLUMNS[c][1](r));
  const sorted = [...rows].sort((a, b) => {
    const [x, y] = [value(a, sort.column), value(b, sort.column)];
    const order = x < y ? -1 : x > y ? 1 : 0;
    return sort.descending ? -order : order;
  });
  const max = Math.max(1, ...rows.map((r) => r.conversations));
  const header = [[key === "topic" ? "Topic" : "Agent", -1], ...COLUMNS.map(([h], i) => [h, i])].map(([h, c]) =>
    el("th", {
      "data-column": c,
      "aria-sort": sort.column === c ? (sort.descending ? "descending" : "ascending") : "none",
      onclick: () => {
        if (sort.column === c) sort.descending = !sort.descending;
        else Object.assign(sort, { column: c, descending: c !== -1 });
        breakdown(table, key, rows);
      },
    }, h));
  const body = sorted.map((r) => {
    const name = r[key];
    const label = key === "topic" ? "Topic" : "Agent";
    const attrs = { "data-name": name ?? "", onclick: () => guarded(() => openDrill(`${label} ${name ?? "(none)"}`, { [key]: name ?? "" })) };
    return el("tr", attrs, el("td", {}, name ?? "(none)"), ...COLUMNS.map(([, , cell]) => el("td", {}, cell(r, max))));
  });
  table.replaceChildren(el("thead", {}, el("tr", {}, ...header)), el("tbody", {}, ...body));
}

async function loadInsights() {
  await loadAlerts();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#insight-filters"))) if (v) params.set(k, v);
  const answer = await json(`/api/insights?${params}`);
  // The filters offer every topic and agent seen, whatever is filtered now.
  const known = (list, key, seen) => { for (const r of list) if (r[key] != null) seen.add(r[key]); return [...seen]; };
  options($("#insight-filters [name=topic]"), known(answer.topics, "topic", state.topics));
  options($("#insight-filters [name=agent]"), known(answer.agents, "agent", state.agents));
  $("#insight-numbers").replaceChildren(
    el("div", { class: "clickable", role: "button", tabindex: "0", onclick: () => guarded(() => openDrill("All", {})) }, el("b", {}, fmt(answer.conversations)), "conversations"),
    el("div", {}, el("b", {}, answer.average_satisfaction == null ? "—" : answer.average_satisfaction.toFixed(2)), "average satisfaction"),
    el("div", {}, el("b", {}, pct(share(answer.sentiment.negative, answer.conversations))), "negative"),
    el("div", {}, el("b", {}, fmt(answer.days.length)), "days"));
  const days = answer.days;
  if (days.length) {
    const onDay = (date) => openDrill(date, { from: date, to: date });
    $("#chart-insight-satisfaction").replaceChildren(line(days.map((d) => [d.date, d.average_satisfaction ?? 3]), 1, 5, onDay));
    $("#chart-insight-sentiment").replaceChildren(stacked(days, onDay));
  } else {
    $("#chart-insight-satisfaction").replaceChildren(el("p", { class: "empty" }, "No completed uploads in this range."));
    $("#chart-insight-sentiment").replaceChildren();
  }
  breakdown($("#insight-topics"), "topic", answer.topics);
  breakdown($("#insight-agents"), "agent", answer.agents);
}

// ---- alerts: days that stand out ---------------------------------------------------

const KIND = { volume: "more conversations than usual", negative_share: "more negative than usual", satisfaction: "less satisfied than usual" };

function describeAlert(a) {
  const value = a.kind === "volume" ? `${fmt(a.value)} conversations (usually ${fmt(Math.round(a.baseline))})`
    : a.kind === "negative_share" ? `${pct(100 * a.value)} negative (usually ${pct(100 * a.baseline)})`
    : `satisfaction ${a.value.toFixed(2)} (usually ${a.baseline.toFixed(2)})`;
  const who = a.topic != null ? `Topic ${a.topic}` : `Agent ${a.agent}`;
  return `${a.date} · ${who}: ${KIND[a.kind]} — ${value}`;
}

async function loadAlerts() {
  const { alerts } = await json("/api/alerts?open=true");
  const box = $("#alerts");
  box.hidden = alerts.length === 0;
  const items = alerts.slice(0, 8).map((a) => {
    const subject = a.topic != null ? { topic: a.topic } : { agent: a.agent };
    return el("li", { "data-alert": a.id },
      el("span", { class: "what" }, describeAlert(a)),
      el("button", { type: "button", class: "show", onclick: () => guarded(() => openDrill(describeAlert(a), { from: a.date, to: a.date, ...subject }, true)) },
        `Show the ${fmt(a.conversations)} conversations`),
      // Acknowledging is an operator's (the server enforces it).
      allows("operator") ? el("button", { type: "button", class: "ack quiet", onclick: () => guarded(async () => { await api(`/api/alerts/${a.id}/ack`, { method: "POST" }); await loadAlerts(); }) },
        "Acknowledge") : "");
  });
  const more = alerts.length > items.length ? [el("li", {}, `and ${alerts.length - items.length} more (powerpulse alerts --open)`)] : [];
  box.replaceChildren(el("h3", {}, alerts.length === 1 ? "1 alert" : `${alerts.length} alerts`), el("ul", {}, ...items, ...more));
}

// ---- drill-down: the conversations behind a number ---------------------------------

const drill = { params: null, cursor: null, title: "" };

// Lists the conversations behind a number of the insights: the insights'
// filters (dates, topic, agent), with `extra` on top (a day, a topic, an
// agent, a search `q`); `fresh`: `extra` alone (an alert's, a link's).
async function openDrill(title, extra, fresh = false) {
  const params = new URLSearchParams();
  if (!fresh) for (const [k, v] of new FormData($("#insight-filters"))) if (v) params.set(k, v);
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  Object.assign(drill, { params, cursor: null, title });
  $("#drill-text").textContent = params.has("q") ? "Match" : "Summary";
  $("#drill tbody").replaceChildren();
  $("#drill-transcript").hidden = true;
  await moreDrill();
  $("#drill").hidden = false;
  $("#drill").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function moreDrill() {
  const params = new URLSearchParams(drill.params);
  params.set("limit", "25");
  if (drill.cursor) params.set("cursor", drill.cursor);
  const page = await json(`/api/conversations?${params}`);
  const rows = page.items.map((r) => {
    const a = r.analysis;
    return el("tr", { "data-upload": r.upload_id, "data-conversation": r.conversation_id, onclick: (e) => guarded(() => openFound(r, e.currentTarget)) },
      el("td", {}, r.date),
      el("td", {}, state.uploadNames.get(r.upload_id) || r.upload_id.slice(0, 8)),
      el("td", {}, r.conversation_id),
      el("td", { class: a ? `label-${a.sentiment.label}` : "" }, a ? a.sentiment.label : r.status),
      el("td", {}, a ? `${a.satisfaction.score}/5` : "—"),
      el("td", {}, r.match ? matched(r.match) : a ? a.summary : ""));
  });
  $("#drill tbody").append(...rows);
  drill.cursor = page.next;
  const shown = $("#drill tbody").children.length;
  $("#drill-title").textContent = `${drill.title}: ${fmt(page.total)} conversation${page.total === 1 ? "" : "s"}`;
  $("#drill").dataset.total = String(page.total);
  $("#drill-count").textContent = `showing ${fmt(shown)} of ${fmt(page.total)}`;
  $("#drill-more").hidden = !page.next;
}

// One listed conversation's transcript, with a way into its upload.
async function openFound(r, row) {
  for (const tr of document.querySelectorAll("#drill tbody tr")) tr.classList.toggle("selected", tr === row);
  const d = await json(`/api/uploads/${r.upload_id}/conversations/${encodeURIComponent(r.conversation_id)}`);
  const open = el("button", { type: "button", onclick: () => guarded(async () => { await select(r.upload_id); await transcript(r.conversation_id); }) },
    `Open ${state.uploadNames.get(r.upload_id) || "its upload"}`);
  showTranscript($("#drill-transcript"), d, el("p", {}, `${r.date} · `, open));
}

// A search's matching text, its matched words marked (offsets are in characters).
function matched(m) {
  const chars = Array.from(m.text);
  const parts = [];
  let at = 0;
  for (const [start, end] of m.highlights) {
    if (start < at) continue;
    parts.push(chars.slice(at, start).join(""), el("mark", {}, chars.slice(start, end).join("")));
    at = end;
  }
  parts.push(chars.slice(at).join(""));
  const who = m.source === "summary" ? "summary" : m.role;
  return el("span", { class: "match" }, el("span", { class: "who" }, `${who}:`), ...parts);
}

// ---- wiring ------------------------------------------------------------------------

const drop = $("#drop-zone");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  enqueue([...e.dataTransfer.files]);
});
$("#file-input").addEventListener("change", (e) => {
  enqueue([...e.target.files]);
  e.target.value = "";
});
$("#preview").addEventListener("submit", (e) => { e.preventDefault(); guarded(startUpload); });
$("#preview-check").addEventListener("click", () => guarded(async () => { readChoices(); await preview(); }));
$("#preview-cancel").addEventListener("click", () => guarded(nextPreview));
$("#filters").addEventListener("change", () => guarded(() => { state.cursors = [null]; state.page = 0; return loadConversations(); }));
$("#next-page").addEventListener("click", () => guarded(() => { state.page += 1; return loadConversations(); }));
$("#prev-page").addEventListener("click", () => guarded(() => { state.page = Math.max(0, state.page - 1); return loadConversations(); }));
for (const b of document.querySelectorAll(".exports button")) b.addEventListener("click", () => guarded(() => exportAs(b.dataset.format)));
$("#token-button").addEventListener("click", () => {
  if (askToken()) guarded(start);
});
$("#audit-refresh").addEventListener("click", () => guarded(loadAudit));
$("#insight-filters").addEventListener("change", () => guarded(loadInsights));
$("#drill-more").addEventListener("click", () => guarded(moreDrill));
$("#search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = new FormData(e.target).get("q").trim();
  if (q) guarded(() => openDrill(`Search “${q}”`, { q }));
});

// A link to conversations (`#conversations?from=…&topic=…`, as alerts and
// digests send): opened once the insights are in.
async function openLinked() {
  const hash = window.location.hash;
  if (!hash.startsWith("#conversations?")) return;
  const params = Object.fromEntries(new URLSearchParams(hash.slice("#conversations?".length)));
  const title = Object.entries(params).map(([k, v]) => `${k} ${v}`).join(", ");
  await openDrill(title || "All", params, true);
}
window.addEventListener("hashchange", () => guarded(openLinked));

// Who is asking first (the token, when the server wants one, is asked for
// once), then everything the role may see; then the conversations a link
// (an alert's, say) points at.
async function start() {
  await loadIdentity();
  guarded(loadUploads);
  guarded(async () => {
    await loadInsights();
    await openLinked();
  });
  guarded(loadAudit);
}

guarded(start);
