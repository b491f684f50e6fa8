// The live console: one snapshot a second from /console/events (server-sent events), the
// review queue and the drill-down through the public API (/v1/...). State-changing calls
// carry the session's CSRF token (X-CSRF-Token), given in the page's <meta>.
import { colorOf, histogram, timeChart } from "./charts.js";

const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const me = document.body.dataset.caller;
const canReview = document.body.dataset.canReview === "true";
const SCORE_EDGES = Array.from({ length: 20 }, (_, i) => i * 50);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const fmt = {
  ms: (v) => (v == null ? "–" : v < 10 ? `${v.toFixed(2)} ms` : v < 100 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`),
  int: (n) => Math.round(n).toLocaleString("en-US"),
  money: (a, c) => (a == null ? "–" : `${a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })} ${c || ""}`),
  time: (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "–"),
  when: (iso) => (iso ? new Date(iso).toLocaleString([], { hour12: false }) : "–"),
  value: (v) => (v == null ? "–" : Number.isInteger(v) ? v.toLocaleString("en-US") : String(Number(v.toPrecision(4)))),
};
const badge = (outcome) => el("span", { class: "badge", style: { color: colorOf(outcome) } }, outcome.replace("_", " "));
const chips = (reasons) => (reasons || []).map((r) => el("span", { class: "chip" }, r));

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET") Object.assign(headers, { "x-csrf-token": csrf, "content-type": "application/json" });
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(data?.error?.message || `${response.status} ${response.statusText}`);
  return data;
}

function banner(message) {
  $("banner").hidden = !message;
  $("banner").textContent = message || "";
}

// --- live figures ---------------------------------------------------------------------------

const charts = {
  tps: timeChart($("chart-tps"), [{ label: "decisions / s", color: "#58a6ff", fill: true }]),
  latency: timeChart($("chart-latency"), [
    { label: "p50", color: "#3fb950" }, { label: "p95", color: "#d29922" }, { label: "p99", color: "#f85149" },
  ], { log: true }),
  scores: histogram($("chart-scores"), SCORE_EDGES, 50, "#58a6ff"),
  flagged: null,
  flaggedOutcomes: "",
  drift: null,
};

// Flagged outcomes a second, and the fraud labels that arrived a second (the fraud rate as
// far as it is known yet: labels come after their payments).
const FRAUD = { label: "fraud reported / s", color: "#e6edf3" };

function flaggedChart(s) {
  const outcomes = Object.keys(s.outcomes).filter((o) => o !== "approve");
  if (outcomes.join() !== charts.flaggedOutcomes || !charts.flagged) {
    charts.flagged?.destroy();
    $("chart-flagged").replaceChildren();
    charts.flagged = timeChart($("chart-flagged"), [...outcomes.map((o) => ({ label: `${o.replace("_", " ")} / s`, color: colorOf(o) })), FRAUD]);
    charts.flaggedOutcomes = outcomes.join();
  }
  const fraud = s.fraud_reported?.length === s.seconds.length ? s.fraud_reported : s.seconds.map(() => 0);
  charts.flagged.setData([s.seconds, ...outcomes.map((o) => s.outcomes[o]), fraud]);
}

// Drift second by second since the page opened (the server sends the latest figures only),
// on the other charts' seconds: the score's PSI and the worst of the top features', log scale
// (0.1 stable, 0.25 significant), floored at 0.001 so that a perfect match still shows.
const driftSeen = new Map();
const PSI_FLOOR = 0.001;

function driftChart(s) {
  const d = s.drift;
  if (d) {
    const worst = d.features.map((f) => f.psi).filter((v) => v != null);
    const floor = (v) => (v == null ? null : Math.max(PSI_FLOOR, v));
    driftSeen.set(s.seconds[s.seconds.length - 1], [floor(d.score.psi), worst.length ? floor(Math.max(...worst)) : null]);
  }
  for (const second of driftSeen.keys()) if (second < s.seconds[0]) driftSeen.delete(second);
  if (!driftSeen.size) return;
  if (!charts.drift) {
    $("chart-drift").hidden = false;
    charts.drift = timeChart($("chart-drift"), [
      { label: "score", color: "#58a6ff" }, { label: "worst feature", color: "#d29922" },
    ], { log: true });
  }
  const at = (i) => s.seconds.map((second) => driftSeen.get(second)?.[i] ?? null);
  charts.drift.setData([s.seconds, at(0), at(1)]);
}

function mix(totals) {
  const all = Object.values(totals).reduce((a, b) => a + b, 0);
  const order = Object.keys(totals).sort((a, b) => (a === "approve" ? -1 : b === "approve" ? 1 : a.localeCompare(b)));
  $("mix-bar").replaceChildren(...order.map((o) => el("span", {
    title: o, style: { width: `${all ? (100 * totals[o]) / all : 0}%`, background: colorOf(o) },
  })));
  $("mix-legend").replaceChildren(...order.map((o) => el("li", { "data-outcome": o },
    el("i", { style: { background: colorOf(o) } }), o.replace("_", " "),
    el("b", {}, fmt.int(totals[o])),
    el("span", { class: "muted" }, all ? `${((100 * totals[o]) / all).toFixed(o === "approve" ? 1 : 2)} %` : ""))));
}

function recent(rows) {
  $("recent-empty").hidden = rows.length > 0;
  $("recent").tBodies[0].replaceChildren(...rows.map((r) => el("tr", { class: "link", "data-tx": r.transaction_id, onclick: () => drill(r.transaction_id) },
    el("td", {}, fmt.time(r.decided_at)), el("td", {}, badge(r.outcome)), el("td", { class: "num" }, String(r.score)),
    el("td", { class: "num" }, fmt.money(r.amount, r.currency)), el("td", {}, r.customer_id || "–"),
    el("td", {}, chips(r.reasons)))));
}

function drift(d) {
  $("drift-empty").hidden = !!d;
  $("drift-sub").textContent = d
    ? `model ${d.model_version} · last ${fmt.int(d.rows)} scored · < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant`
    : "PSI against the model's training data";
  const rows = d ? [d.score, ...d.features] : [];
  $("drift").tBodies[0].replaceChildren(...rows.map((f) => el("tr", { "data-name": f.name, "data-level": f.level || "none" },
    el("td", {}, f.name), el("td", { class: "num" }, f.psi == null ? "–" : f.psi.toFixed(3)),
    el("td", {}, el("span", { class: `badge psi-${f.level || "none"}` }, f.level || "too few rows")))));
}

function ruleHits(hits, total) {
  const rows = Object.entries(hits || {});
  $("rules-empty").hidden = rows.length > 0;
  $("rules").tBodies[0].replaceChildren(...rows.map(([rule, n]) => el("tr", {},
    el("td", { class: "mono" }, rule), el("td", { class: "num" }, fmt.int(n)),
    el("td", { class: "num" }, total ? `${((100 * n) / total).toFixed(2)} %` : "–"))));
}

function render(s) {
  if (s.error) return banner(s.error);
  banner(null);
  $("model-version").textContent = s.model_version;
  $("rules-version").textContent = s.rules_version;
  const last = s.tps.slice(-10);
  const tps = last.reduce((a, b) => a + b, 0) / Math.max(1, last.length);
  $("kpi-tps").textContent = tps < 10 ? tps.toFixed(1) : fmt.int(tps);
  for (const q of ["p50", "p95", "p99"]) $(`kpi-${q}`).textContent = fmt.ms(s.latency[q]);
  const total = Object.values(s.totals).reduce((a, b) => a + b, 0);
  const flagged = total - (s.totals.approve || 0);
  $("kpi-flagged").textContent = total ? `${((100 * flagged) / total).toFixed(2)} %` : "–";
  const fraud = (s.labels || {}).fraud || 0;
  $("kpi-fraud").textContent = `not approved, last 60 s · fraud reported ${fmt.int(fraud)}`
    + (total ? ` (${((100 * fraud) / total).toFixed(2)} % of decided)` : "");
  $("kpi-total").textContent = fmt.int(s.decisions);
  charts.tps.setData([s.seconds, s.tps]);
  charts.latency.setData([s.seconds, s.p50, s.p95, s.p99]);
  charts.scores.setData([SCORE_EDGES, s.scores.map((n) => n || null)]);
  flaggedChart(s);
  mix(s.totals);
  recent(s.recent);
  drift(s.drift);
  driftChart(s);
  ruleHits(s.rule_hits, total);
}

function connect() {
  const source = new EventSource("/console/events");
  const live = (on, text) => {
    $("live-dot").className = `dot ${on ? "on" : "off"}`;
    $("live-text").textContent = text;
  };
  source.onopen = () => live(true, "live");
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => {
    live(false, source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    if (source.readyState === EventSource.CLOSED) banner("The live feed stopped (signed out, or the server is gone): reload the page.");
  };
}

// --- review queue ---------------------------------------------------------------------------

async function act(review, action, verdict) {
  try {
    if (action === "claim") await api("POST", `/v1/reviews/${review}/claim`);
    else await api("POST", `/v1/reviews/${review}/resolve`, { verdict, note: $("verdict-note")?.value || "" });
  } catch (error) {
    banner(`Review ${review}: ${error.message}`);
  }
  await loadQueue();
  if (!$("drill").hidden && shown) await drill(shown);
}

function actions(r) {
  if (!canReview || r.status === "resolved") return [];
  const mine = r.status === "open" || r.assignee === me;
  const stop = (fn) => (event) => { event.stopPropagation(); fn(); };
  return [
    r.status === "open" ? el("button", { class: "claim", onclick: stop(() => act(r.review_id, "claim")) }, "Claim") : null,
    mine ? el("button", { class: "fraud", onclick: stop(() => act(r.review_id, "resolve", "fraud")) }, "Fraud") : null,
    mine ? el("button", { class: "genuine", onclick: stop(() => act(r.review_id, "resolve", "genuine")) }, "Genuine") : null,
  ];
}

async function loadQueue() {
  if (!canReview) {
    $("queue-empty").textContent = "Your key lacks the review scope: the queue is not shown.";
    return;
  }
  try {
    const pages = await Promise.all(["claimed", "open"].map((s) => api("GET", `/v1/reviews?status=${s}&limit=50`)));
    const rows = pages.flatMap((p) => p.reviews).sort((a, b) => a.created_at.localeCompare(b.created_at));
    $("queue-empty").hidden = rows.length > 0;
    $("queue-count").textContent = rows.length ? `${rows.length} open or claimed` : "";
    $("queue").tBodies[0].replaceChildren(...rows.map((r) => el("tr", { class: "link", "data-review": r.review_id, onclick: () => drill(r.transaction_id) },
      el("td", { class: "num" }, String(r.review_id)), el("td", { class: "mono" }, r.transaction_id),
      el("td", { class: "num" }, String(r.score)), el("td", { class: "num" }, fmt.money(r.amount, "")),
      el("td", {}, r.status === "claimed" ? `claimed by ${r.assignee}` : r.status),
      el("td", { class: "actions" }, actions(r)))));
  } catch (error) {
    banner(`Review queue: ${error.message}`);
  }
}

// --- drill-down -----------------------------------------------------------------------------

function fields(pairs) {
  return el("dl", { class: "fields" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function contributions(decision) {
  const parts = Object.entries(decision.contributions || {}).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 12);
  if (!parts.length) return el("p", { class: "empty" }, "No feature contributions stored for this decision.");
  const top = Math.max(...parts.map(([, v]) => Math.abs(v)));
  const features = decision.features || {};
  return el("div", { class: "contrib" }, parts.flatMap(([name, v]) => [
    el("div", { class: "name mono", title: name }, name),
    el("div", { class: "value num mono", "data-feature": name, title: "the feature's value the model saw" }, fmt.value(features[name])),
    el("div", { class: "track" }, el("span", { class: v >= 0 ? "up" : "down", style: { width: `${(50 * Math.abs(v)) / top}%` } })),
    el("div", { class: "num mono" }, (v >= 0 ? "+" : "") + v.toFixed(3)),
  ]));
}

function reviewPart(review) {
  if (!review) return [];
  const controls = canReview && review.status !== "resolved" ? el("div", { class: "verdict" },
    el("input", { id: "verdict-note", placeholder: "note (optional)" }), actions(review)) : null;
  return [el("h3", {}, "Review"), fields([["review", `#${review.review_id}`], ["status", review.status],
    ["assignee", review.assignee], ["verdict", review.verdict]]), controls];
}

function challengePart(c) {
  if (!c) return [];
  const final = c.final_outcome ? badge(c.final_outcome) : "–";
  return [el("h3", {}, "Step-up challenge"), fields([["status", c.status], ["attempts", `${c.attempts} of ${c.max_attempts}`],
    ["expires", fmt.when(c.expires_at)], ["closed", c.resolved_at ? fmt.when(c.resolved_at) : null], ["final outcome", final]])];
}

function drillView(d) {
  const tx = d.transaction || {};
  const decision = d.decision;
  const stages = decision?.stage_ms ? Object.entries(decision.stage_ms).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(" · ") : null;
  return [
    el("h3", {}, "Decision"),
    decision ? fields([["outcome", badge(decision.outcome)], ["score", String(decision.score)], ["reasons", el("span", {}, chips(decision.reasons))],
      ["latency", `${fmt.ms(decision.latency_ms)}${stages ? ` (${stages} ms)` : ""}`], ["decided", fmt.when(decision.decided_at)],
      ["model", decision.model_version], ["rules", decision.rules_version]]) : el("p", { class: "empty" }, "No stored decision."),
    ...reviewPart(d.review ? { ...d.review, transaction_id: d.transaction_id } : null),
    ...challengePart(d.challenge),
    decision ? [el("h3", {}, "Feature contributions and values"), contributions(decision)] : null,
    el("h3", {}, "Transaction"),
    d.transaction ? fields([["amount", fmt.money(tx.amount, tx.currency)], ["time", fmt.when(tx.timestamp)], ["customer", tx.customer_id],
      ["merchant", tx.merchant_id], ["terminal", tx.terminal_id], ["channel", tx.channel], ["card", tx.card_id], ["mcc", tx.mcc],
      ["product", tx.product_category], ["ip", tx.ip], ["device", tx.device_id], ["e-mail", tx.email]])
      : el("p", { class: "empty" }, "The store does not hold this transaction yet."),
    d.customer ? [el("h3", {}, "Customer"), fields([["id", d.customer.customer_id], ["name", d.customer.name], ["segment", d.customer.segment],
      ["e-mail", d.customer.email], ["phone", d.customer.phone]])] : null,
    d.recent.length ? [el("h3", {}, "Customer's latest transactions"), el("table", {},
      el("thead", {}, el("tr", {}, ["time", "amount", "merchant", "outcome", "score"].map((h) => el("th", {}, h)))),
      el("tbody", {}, d.recent.map((r) => el("tr", { class: "link", onclick: () => drill(r.transaction_id) },
        el("td", {}, fmt.when(r.timestamp)), el("td", { class: "num" }, fmt.money(r.amount, r.currency)), el("td", {}, r.merchant_id),
        el("td", {}, r.outcome ? badge(r.outcome) : "–"), el("td", { class: "num" }, r.score ?? "–")))))] : null,
  ];
}

let shown = null;

async function drill(transactionId) {
  shown = transactionId;
  $("drill").hidden = false;
  $("drill-title").textContent = transactionId;
  $("drill-body").replaceChildren(el("p", { class: "empty" }, "loading…"));
  try {
    const detail = await api("GET", `/v1/transactions/${encodeURIComponent(transactionId)}`);
    $("drill-body").replaceChildren(...drillView(detail).flat().filter(Boolean));
  } catch (error) {
    $("drill-body").replaceChildren(el("p", { class: "empty" }, error.message));
  }
}

$("drill-close").addEventListener("click", () => { $("drill").hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("drill").hidden = true; });
connect();
loadQueue();
setInterval(loadQueue, 5000);
