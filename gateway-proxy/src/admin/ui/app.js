// Gantry's dashboard: reads this proxy's /status, /config and /metrics every few seconds and
// draws the view its path names (/ui, /ui/gateways, /ui/routes, /ui/backends, /ui/reloads,
// /ui/explain). Plain DOM, no framework, nothing loaded from elsewhere.
"use strict";

const INTERVAL_MS = 2000;
// Conditions whose True is the problem (as `gantry-proxy validate` reads them).
const TRUE_IS_A_PROBLEM = ["Conflicted", "OverlappingTLSConfig", "PartiallyInvalid"];
const ROUTE_KINDS = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

const state = { status: [], config: null, ready: null, routes: new Map(), rejections: new Map(), totals: null, prev: null, polls: 0, error: null };

// ---- DOM helpers (text is always set as text, never parsed as HTML) ----
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const table = (head, rows) => h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows));
const link = (href, text) => h("a", { href, "data-nav": true }, text);

// ---- conditions ----
function unhealthy(c) {
  return TRUE_IS_A_PROBLEM.includes(c.type) ? c.status !== "False" : c.status !== "True";
}
function conditionBadges(conditions) {
  return (conditions || []).map((c) =>
    h("span", { class: "cond " + (unhealthy(c) ? "bad" : "ok"), title: c.message || "" }, `${c.type}: ${c.reason}`));
}
function problemsOf(object) {
  const out = [];
  const who = `${object.kind} ${object.namespace ? object.namespace + "/" : ""}${object.name}`;
  const add = (scope, conditions) => {
    for (const c of conditions || []) if (unhealthy(c)) out.push({ who, scope, c });
  };
  const s = object.status || {};
  add("", s.conditions);
  for (const l of s.listeners || []) add(`listener ${l.name}`, l.conditions);
  for (const p of s.parents || []) add(`parent ${refName(p.parentRef)}`, p.conditions);
  for (const a of s.ancestors || []) add(`ancestor ${refName(a.ancestorRef)}`, a.conditions);
  return out;
}
function refName(ref) {
  if (!ref) return "";
  return `${ref.kind || "Gateway"} ${ref.namespace ? ref.namespace + "/" : ""}${ref.name}${ref.sectionName ? "/" + ref.sectionName : ""}`;
}

// ---- metrics ----
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, ch) => (ch === "n" ? "\n" : ch));
      }
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}
function emptyStats() {
  return { requests: 0, errors: 0, buckets: new Map(), sum: 0 };
}
// Per route (label `route`, `namespace/name`) and in all: requests, 5xx, latency buckets.
function aggregate(samples) {
  const routes = new Map();
  const rejections = new Map();
  const total = emptyStats();
  const stats = (route) => {
    if (!routes.has(route)) routes.set(route, emptyStats());
    return routes.get(route);
  };
  for (const s of samples) {
    const route = s.labels.route || "";
    if (s.name === "gantry_requests_total") {
      for (const t of [stats(route), total]) {
        t.requests += s.value;
        if (s.labels.status_class === "5xx") t.errors += s.value;
      }
    } else if (s.name === "gantry_request_duration_seconds_bucket") {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      for (const t of [stats(route), total]) t.buckets.set(le, (t.buckets.get(le) || 0) + s.value);
    } else if (s.name === "gantry_circuit_breaker_rejections_total") {
      rejections.set(s.labels.cluster, (rejections.get(s.labels.cluster) || 0) + s.value);
    }
  }
  return { routes, total, rejections };
}
// Over the window since the previous poll when there was traffic in it, else since start.
function windowed(now, before) {
  if (!before || now.requests <= before.requests) return { window: false, ...now };
  const buckets = new Map();
  for (const [le, v] of now.buckets) buckets.set(le, v - (before.buckets.get(le) || 0));
  return { window: true, requests: now.requests - before.requests, errors: now.errors - before.errors, buckets };
}
// As Prometheus' histogram_quantile: linear within the bucket; the +Inf bucket gives the
// highest finite bound.
function quantile(q, buckets) {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  if (bounds.length === 0) return null;
  const total = buckets.get(bounds[bounds.length - 1]);
  if (!total) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const b of bounds) {
    const count = buckets.get(b);
    if (count >= rank) {
      if (b === Infinity) return lowerBound;
      return lowerBound + (b - lowerBound) * ((rank - lowerCount) / (count - lowerCount || 1));
    }
    lowerBound = b;
    lowerCount = count;
  }
  return lowerBound;
}
function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const v = seconds * 1000;
  return v < 10 ? v.toFixed(2) + " ms" : v.toFixed(0) + " ms";
}
function pct(ratio) {
  return ratio === null ? "–" : (ratio * 100).toFixed(ratio < 0.1 ? 2 : 1) + "%";
}
function live(now, before, seconds) {
  const w = windowed(now, before);
  return {
    requests: now.requests,
    rate: before && seconds > 0 ? Math.max(0, now.requests - before.requests) / seconds : null,
    errorRatio: w.requests > 0 ? w.errors / w.requests : null,
    p50: quantile(0.5, w.buckets),
    p90: quantile(0.9, w.buckets),
    p99: quantile(0.99, w.buckets),
  };
}

// ---- polling ----
async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}
async function poll() {
  try {
    const [status, config, metricsText, ready] = await Promise.all([
      getJson("/status"),
      getJson("/config"),
      fetch("/metrics", { cache: "no-store" }).then((r) => r.text()),
      fetch("/readyz", { cache: "no-store" }).then(async (r) => ({ ok: r.ok, text: (await r.text()).trim() })),
    ]);
    const at = performance.now();
    const agg = aggregate(parseMetrics(metricsText));
    const prev = state.prev;
    const seconds = prev ? (at - prev.at) / 1000 : 0;
    state.routes = new Map([...agg.routes].map(([k, v]) => [k, live(v, prev && prev.routes.get(k), seconds)]));
    state.totals = live(agg.total, prev && prev.total, seconds);
    state.rejections = agg.rejections;
    state.prev = { at, routes: agg.routes, total: agg.total };
    Object.assign(state, { status, config, ready, error: null });
    state.polls += 1;
  } catch (e) {
    state.error = String(e.message || e);
  }
  render(false);
  document.body.dataset.polls = String(state.polls);
  if (state.config) document.body.dataset.version = String(state.config.version);
}

// ---- views ----
function objects(kinds) {
  return state.status.filter((o) => kinds.includes(o.kind));
}
function overview() {
  const gateways = objects(["Gateway"]);
  const listeners = gateways.reduce((n, g) => n + ((g.status || {}).listeners || []).length, 0);
  const routes = objects(ROUTE_KINDS);
  const clusters = Object.values((state.config && state.config.ir.clusters) || {});
  const endpoints = clusters.reduce((n, c) => n + (c.endpoints || []).length, 0);
  const t = state.totals || {};
  const card = (label, value, field) => h("div", { class: "card" }, h("b", { "data-field": field }, value), label);
  const problems = state.status.flatMap(problemsOf);
  return [
    h("div", { class: "cards" },
      card("config version", state.config ? state.config.version : "–", "version"),
      card("gateways", gateways.length, "gateways"),
      card("listeners", listeners, "listeners"),
      card("routes", routes.length, "routes"),
      card("backends", clusters.length, "backends"),
      card("endpoints", endpoints, "endpoints"),
      card("requests", t.requests ?? "–", "requests"),
      card("requests/s", t.rate === null || t.rate === undefined ? "–" : t.rate.toFixed(1), "rate"),
      card("5xx ratio", pct(t.errorRatio ?? null), "error-ratio"),
      card("p99 latency", ms(t.p99), "p99")),
    h("h2", {}, `Problems (${problems.length})`),
    problems.length === 0
      ? h("p", { class: "ok", "data-field": "no-problems" }, "Every condition is healthy.")
      : table(["object", "where", "condition", "message"], problems.map((p) =>
          h("tr", { "data-problem": p.who }, h("td", {}, p.who), h("td", {}, p.scope),
            h("td", { class: "bad" }, `${p.c.type}=${p.c.status} (${p.c.reason})`), h("td", {}, p.c.message)))),
  ];
}
function gatewaysView() {
  const gateways = objects(["Gateway"]);
  if (gateways.length === 0) return h("p", { class: "muted" }, "No Gateway of this proxy.");
  const others = state.status.filter((o) => !ROUTE_KINDS.includes(o.kind) && o.kind !== "Gateway");
  return [
    gateways.map((g) => {
      const s = g.status || {};
      return h("section", { "data-gateway": `${g.namespace}/${g.name}` },
        h("h2", {}, `Gateway ${g.namespace}/${g.name}`),
        h("p", {}, conditionBadges(s.conditions), " ",
          h("span", { class: "muted" }, (s.addresses || []).map((a) => a.value).join(", "))),
        table(["listener", "attached routes", "conditions"], (s.listeners || []).map((l) =>
          h("tr", { "data-listener": l.name }, h("td", {}, l.name), h("td", { class: "num" }, l.attachedRoutes),
            h("td", {}, conditionBadges(l.conditions))))));
    }),
    others.length === 0 ? null : [
      h("h2", {}, "Classes, listener sets and policies"),
      table(["kind", "name", "conditions"], others.map((o) => {
        const s = o.status || {};
        const conds = [...(s.conditions || []), ...(s.ancestors || []).flatMap((a) => a.conditions || [])];
        return h("tr", {}, h("td", {}, o.kind), h("td", {}, `${o.namespace ? o.namespace + "/" : ""}${o.name}`),
          h("td", {}, conditionBadges(conds)));
      })),
    ],
  ];
}
function routesView() {
  const routes = objects(ROUTE_KINDS);
  if (routes.length === 0) return h("p", { class: "muted" }, "No route is attached to this proxy's Gateways.");
  return table(["route", "parents", "requests", "requests/s", "5xx", "p50", "p90", "p99"], routes.map((r) => {
    const key = `${r.namespace}/${r.name}`;
    const m = state.routes.get(key) || { requests: 0, rate: null, errorRatio: null, p50: null, p90: null, p99: null };
    return h("tr", { "data-route": key },
      h("td", {}, `${r.kind} ${key}`),
      h("td", {}, ((r.status || {}).parents || []).map((p) => h("div", {}, refName(p.parentRef), " ", conditionBadges(p.conditions)))),
      h("td", { class: "num", "data-field": "requests" }, m.requests),
      h("td", { class: "num", "data-field": "rate" }, m.rate === null ? "–" : m.rate.toFixed(1)),
      h("td", { class: "num", "data-field": "error-ratio" }, pct(m.errorRatio)),
      h("td", { class: "num" }, ms(m.p50)),
      h("td", { class: "num" }, ms(m.p90)),
      h("td", { class: "num", "data-field": "p99" }, ms(m.p99)));
  }));
}
function backendsView() {
  const clusters = Object.values((state.config && state.config.ir.clusters) || {});
  if (clusters.length === 0) return h("p", { class: "muted" }, "No backend.");
  const health = (state.config && state.config.endpointHealth) || {};
  return table(["backend", "protocol", "endpoints", "balancing", "circuit breaker"], clusters.map((c) => {
    const hv = health[c.name];
    const byEndpoint = new Map(((hv && hv.endpoints) || []).map((e) => [e.endpoint, e]));
    const policy = c.backendConfig || {};
    const cb = policy.circuitBreaker;
    return h("tr", { "data-backend": c.name },
      h("td", {}, c.name, hv && hv.panic ? h("span", { class: "cond bad" }, "panic mode") : null),
      h("td", {}, c.protocol || ""),
      h("td", {}, (c.endpoints || []).length === 0 ? h("span", { class: "bad" }, "none") :
        (c.endpoints || []).map((e) => {
          const eh = byEndpoint.get(e);
          const st = eh ? eh.state : "unchecked";
          return h("div", { "data-endpoint": e }, e, " ",
            h("span", { class: "cond " + (st === "healthy" ? "ok" : st === "unchecked" ? "muted" : "bad"), title: eh && eh.ejectedUntil ? `ejected until ${eh.ejectedUntil}` : "" }, st));
        })),
      h("td", {}, policy.loadBalancer ? (policy.loadBalancer.type || JSON.stringify(policy.loadBalancer)) : "round robin"),
      h("td", {}, cb ? [
        ...Object.entries(cb).map(([k, v]) => h("div", {}, `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)),
        h("div", { class: (state.rejections.get(c.name) || 0) > 0 ? "bad" : "muted", "data-field": "rejections" }, `rejected: ${state.rejections.get(c.name) || 0}`),
      ] : h("span", { class: "muted" }, "none")));
  }));
}
function reloadsView() {
  const reloads = ((state.config && state.config.reloads) || []).slice().reverse();
  if (reloads.length === 0) return h("p", { class: "muted" }, "No configuration change yet.");
  return table(["at", "result", "version", "took", "errors and warnings"], reloads.map((r) =>
    h("tr", { "data-reload": r.result },
      h("td", {}, r.at), h("td", { class: r.result === "rejected" ? "bad" : "ok" }, r.result),
      h("td", { class: "num" }, r.version), h("td", { class: "num" }, r.tookMs.toFixed(1) + " ms"),
      h("td", {}, [...(r.errors || []).map((e) => h("div", { class: "bad" }, e)), ...(r.warnings || []).map((w) => h("div", { class: "warn" }, w))]))));
}

// The explain view keeps its form across polls; only a new query runs explain again.
let explained = { key: null, node: null };
function explainView() {
  const params = new URLSearchParams(location.search);
  const request = params.get("request") || "";
  const headers = params.getAll("header").join("\n");
  const sni = params.get("sni") || "";
  const form = h("form", { class: "explain", action: "/ui/explain", method: "get", onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      q.set("request", form.elements.request.value);
      for (const line of form.elements.header.value.split("\n")) if (line.trim()) q.append("header", line.trim());
      if (form.elements.sni.value.trim()) q.set("sni", form.elements.sni.value.trim());
      go("/ui/explain?" + q.toString());
    } },
    h("label", {}, "Request (METHOD URL)", h("input", { name: "request", value: request, placeholder: "GET https://shop.example.com/cart?x=1", required: true })),
    h("label", {}, "Headers, one per line", h("textarea", { name: "header", rows: 2, placeholder: "cookie: session=abc" }, headers)),
    h("label", {}, "TLS server name (when not the URL's host)", h("input", { name: "sni", value: sni })),
    h("button", { type: "submit" }, "Explain"));
  const key = location.search;
  if (request && explained.key !== key) {
    explained = { key, node: h("p", { class: "muted" }, "Explaining…") };
    fetch("/ui/api/explain" + location.search, { cache: "no-store" }).then(async (r) => {
      const body = r.headers.get("content-type")?.startsWith("application/json") ? await r.json() : { error: await r.text() };
      const node = body.error !== undefined
        ? h("pre", { class: "bad", "data-field": "explain-error" }, body.error)
        : h("div", {}, h("p", { class: "muted" }, `configuration version ${body.version}`),
            h("pre", { "data-field": "explanation", "data-route": body.explanation.route ? `${body.explanation.route.namespace}/${body.explanation.route.name}` : "" }, body.text));
      if (explained.key === key) {
        explained.node = node;
        render(true);
      }
    });
  }
  return [form, request ? explained.node : h("p", { class: "muted" }, "Which listener, route, rule, filters, policies and backends would this request get, and why did the other routes not match?")];
}

const VIEWS = { "": overview, gateways: gatewaysView, routes: routesView, backends: backendsView, reloads: reloadsView, explain: explainView };
function currentView() {
  const name = location.pathname.replace(/^\/ui\/?/, "").replace(/\/$/, "");
  return name in VIEWS ? name : "";
}
let lastViewName = null;
function render(force) {
  const name = currentView();
  const state_ = document.getElementById("state");
  if (state.error) {
    state_.textContent = "cannot reach the proxy: " + state.error;
    state_.className = "bad";
  } else if (state.config) {
    state_.textContent = `version ${state.config.version} · ${state.ready && state.ready.ok ? "ready" : (state.ready ? state.ready.text : "")}`;
    state_.className = state.ready && state.ready.ok ? "ok" : "warn";
  }
  const banner = document.getElementById("banner");
  const errors = (state.config && state.config.source && state.config.source.errors) || [];
  banner.hidden = errors.length === 0;
  banner.textContent = errors.length === 0 ? "" :
    `The last configuration change was rejected; version ${state.config.version} keeps serving.\n${errors.join("\n")}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.view === name);
  // The explain form is redrawn only when the view or the query changes, not on every poll.
  if (name === "explain" && lastViewName === "explain" && !force) return;
  lastViewName = name;
  const view = document.getElementById("view");
  view.replaceChildren(...[VIEWS[name]()].flat(Infinity).filter((n) => n));
  document.title = `Gantry · ${name || "overview"}`;
  document.body.dataset.view = name || "overview";
}
function go(href) {
  history.pushState(null, "", href);
  render(true);
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", () => render(true));
document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const request = e.target.elements.request.value.trim();
  if (request) go("/ui/explain?request=" + encodeURIComponent(request));
});
document.getElementById("interval").textContent = String(INTERVAL_MS / 1000);
poll();
setInterval(poll, INTERVAL_MS);
