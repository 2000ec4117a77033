// PowerPulse dashboard: plain ES module, no dependencies, no network beyond this server.

const $ = (sel, root = document) => root.querySelector(sel);
const FINAL = new Set(["completed", "failed", "cancelled"]);
const state = { selected: null, cursors: [null], page: 0, following: new Set() };

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
  if (s.errors && s.errors.length) $(".stats", c).append(el("span", { class: "errors" }, `errors: ${s.errors.slice(-3).join("; ")}`));
  $(".cancel", c).hidden = FINAL.has(s.stage);
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

async function upload(file) {
  await guarded(async () => {
    // A non-simple Content-Type: the server refuses raw uploads that another
    // site's page could send without a CORS preflight.
    const accepted = await json(`/api/upload?filename=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": "application/octet-stream" },
    });
    render({ upload_id: accepted.upload_id, filename: accepted.filename, stage: "parsing", percent: 0, llm: {} });
    follow(accepted.upload_id);
    await loadUploads();
  });
}

// ---- past uploads ------------------------------------------------------------------

async function loadUploads() {
  const uploads = await json("/api/uploads");
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

function line(points) {
  const w = 300, h = 160, pad = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", points.map(([d, v]) => `${d}: ${v.toFixed(2)}`).join(", "));
  const x = (i) => pad + (points.length === 1 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (points.length - 1));
  const y = (v) => h / 2 - (v * (h - 2 * pad)) / 2;
  const path = points.map(([, v], i) => `${i ? "L" : "M"}${x(i)},${y(v)}`).join(" ");
  svg.insertAdjacentHTML("beforeend",
    `<line x1="${pad}" x2="${w - pad}" y1="${h / 2}" y2="${h / 2}" stroke="#bbb" stroke-dasharray="3 3"></line>` +
    `<text x="2" y="${pad}">+1</text><text x="2" y="${h / 2 + 4}">0</text><text x="2" y="${h - pad + 8}">−1</text>` +
    `<path d="${path}" fill="none" stroke="#1f5fbf" stroke-width="2"></path>` +
    points.map(([d, v], i) => `<circle cx="${x(i)}" cy="${y(v)}" r="3" fill="#1f5fbf"><title>${d}: ${v.toFixed(2)}</title></circle>`).join("") +
    `<text x="${pad}" y="${h - 4}">${points[0][0]}</text><text x="${w - pad}" y="${h - 4}" text-anchor="end">${points[points.length - 1][0]}</text>`);
  return svg;
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
  $("#transcript").hidden = true;
  await loadConversations();
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
      el("td", {}, a ? a.summary : r.error || ""));
  });
  $("#conversations tbody").replaceChildren(...rows);
  $("#page-label").textContent = `page ${state.page + 1}`;
  $("#prev-page").disabled = state.page === 0;
  $("#next-page").disabled = !page.next_cursor;
}

async function transcript(conversationId) {
  const d = await json(`/api/uploads/${state.selected}/conversations/${encodeURIComponent(conversationId)}`);
  const who = { customer: "Customer", agent: "Agent", bot: "Bot" };
  const messages = d.messages.map((m) =>
    el("div", { class: `msg ${m.role}${m.autoresponse ? " autoresponse" : ""}` },
      el("span", { class: "who" }, `${who[m.role] || m.role}${m.autoresponse ? " (autoresponse, not analysed)" : ""}`),
      m.text));
  const a = d.analysis;
  const analysis = a
    ? el("p", { class: "analysis" }, `Sentiment ${a.sentiment.label} (${a.sentiment.score.toFixed(2)}), satisfaction ${a.satisfaction.score}/5 (${a.satisfaction.label}), resolved: ${a.resolved == null ? "unknown" : a.resolved ? "yes" : "no"}. ${a.summary}`)
    : el("p", { class: "analysis" }, d.record && d.record.error ? `Not analysed: ${d.record.error}` : "Not analysed yet.");
  const box = $("#transcript");
  box.replaceChildren(el("h3", {}, `Conversation ${d.conversation_id}`), analysis, ...messages);
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

// ---- wiring ------------------------------------------------------------------------

const drop = $("#drop-zone");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  for (const f of e.dataTransfer.files) upload(f);
});
$("#file-input").addEventListener("change", (e) => {
  for (const f of e.target.files) upload(f);
  e.target.value = "";
});
$("#filters").addEventListener("change", () => guarded(() => { state.cursors = [null]; state.page = 0; return loadConversations(); }));
$("#next-page").addEventListener("click", () => guarded(() => { state.page += 1; return loadConversations(); }));
$("#prev-page").addEventListener("click", () => guarded(() => { state.page = Math.max(0, state.page - 1); return loadConversations(); }));
for (const b of document.querySelectorAll(".exports button")) b.addEventListener("click", () => guarded(() => exportAs(b.dataset.format)));
$("#token-button").addEventListener("click", () => { if (askToken()) guarded(loadUploads); });

guarded(loadUploads);
