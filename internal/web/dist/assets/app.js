// src/api.ts
var HttpError = class extends Error {
  constructor(status, message2) {
    super(message2);
    this.status = status;
  }
  status;
};
async function failure(res) {
  let msg = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body.error) msg = body.error;
  } catch {
  }
  return new HttpError(res.status, msg);
}
async function getJSON(path2) {
  const res = await fetch(path2, { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw await failure(res);
  return await res.json();
}
var getConfig = () => getJSON("/api/config");
async function getView() {
  const res = await fetch("/api/topology", { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw await failure(res);
  const raw = await res.text();
  return { view: JSON.parse(raw), raw };
}
async function postJSON(path2, body) {
  const res = await fetch(path2, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body)
  });
  if (!res.ok) throw await failure(res);
  return await res.json();
}
async function followEvents(since, onOpen, onEvent, signal) {
  const q = since === null ? "follow=true" : `follow=true&since=${since}`;
  const res = await fetch(`/api/events?${q}`, { credentials: "same-origin", cache: "no-store", signal });
  if (!res.ok || !res.body) throw await failure(res);
  onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (; ; ) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onEvent(JSON.parse(line));
    }
  }
}

// src/details.ts
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== void 0) e.textContent = text;
  return e;
}
function link(kind, name, text = name) {
  const a = el("button", "link", text);
  a.type = "button";
  a.dataset.select = `${kind}:${name}`;
  return a;
}
function rows(items) {
  const dl = el("dl");
  for (const [k, v] of items) {
    if (v === null || v === void 0 || v === "" || Array.isArray(v) && v.length === 0) continue;
    dl.append(el("dt", void 0, k));
    const dd = el("dd");
    if (Array.isArray(v)) {
      v.forEach((part, i) => {
        if (i > 0) dd.append(", ");
        dd.append(part);
      });
    } else {
      dd.append(typeof v === "number" ? String(v) : v);
    }
    dl.append(dd);
  }
  return dl;
}
function drift(list) {
  if (!list?.length) return null;
  const ul = el("ul", "drift-items");
  for (const d of list) ul.append(el("li", void 0, d));
  return ul;
}
function heading(kind, name, drifted) {
  const h = el("h2", drifted ? "drifted" : void 0);
  h.append(el("span", "kind", kind + " "), name);
  return h;
}
function portsOf(t, sandbox) {
  const out = [];
  for (const n of t.networks ?? []) {
    for (const p of n.ports ?? []) if (p.sandbox === sandbox) out.push({ network: n.name, port: p });
  }
  return out;
}
function portLine(network, p) {
  const li = el("li", p.drift?.length ? "drifted" : void 0);
  li.append(
    link("network", network),
    ` ${p.ifname} ${(p.ips ?? []).join(", ")} `,
    // A direct link's or a macvlan's endpoint has no host end.
    p.host_if ? link("port", p.host_if, `${p.host_if} (ifindex ${p.host_ifindex})`) : "no host end"
  );
  return li;
}
function show(panel, t, sel) {
  panel.replaceChildren();
  if (!t || !sel) {
    panel.append(el("p", "empty", "Nothing selected. Click a network, a sandbox or a port line."));
    return;
  }
  const parts = [];
  switch (sel.kind) {
    case "host": {
      parts.push(
        heading("host", t.host, !!t.drift?.length),
        rows([
          ["uplinks", (t.uplinks ?? []).map((u) => `${u.name} (ifindex ${u.ifindex}, mtu ${u.mtu})`).join(", ")],
          ["networks", (t.networks ?? []).map((n) => link("network", n.name))],
          [
            "repairs",
            Object.entries(t.repairs ?? {}).map(([k, v]) => `${k} ${v}`).join(", ")
          ]
        ]),
        drift(t.drift)
      );
      break;
    }
    case "network": {
      const n = t.networks?.find((x) => x.name === sel.name);
      if (!n) break;
      const ports = el("ul", "ports");
      for (const p of n.ports ?? []) {
        const li = portLine(n.name, p);
        li.prepend(link("sandbox", p.sandbox), " ");
        li.querySelector('[data-select^="network:"]')?.remove();
        ports.append(li);
      }
      parts.push(
        heading("network", n.name, !!n.drift?.length),
        rows([
          ["driver", n.driver],
          ["subnets", (n.subnets ?? []).map((s) => s.subnet).join(", ")],
          ["gateways", (n.subnets ?? []).map((s) => s.gateway).filter((g) => g).join(", ") || "none"],
          ["internal", n.internal ? "yes: no way out, no published ports" : "no"],
          ["bridge", n.bridge ? `${n.bridge} (ifindex ${n.bridge_ifindex})` : "none"],
          ["ports", String(n.ports?.length ?? 0)]
        ]),
        drift(n.drift),
        n.ports?.length ? ports : null
      );
      break;
    }
    case "sandbox": {
      const s = t.sandboxes?.find((x) => x.name === sel.name);
      if (!s) break;
      const eps = el("ul", "ports");
      for (const { network, port } of portsOf(t, s.name)) eps.append(portLine(network, port));
      parts.push(
        heading("sandbox", s.name, !!s.drift?.length),
        rows([
          ["kind", s.kind],
          ["netns", s.netns],
          ["networks", (s.networks ?? []).map((n) => link("network", n))]
        ]),
        drift(s.drift),
        eps.childElementCount ? eps : null
      );
      break;
    }
    case "port": {
      for (const n of t.networks ?? []) {
        const p = n.ports?.find((x) => (x.host_if || `${x.sandbox}/${x.ifname}`) === sel.name);
        if (!p) continue;
        parts.push(
          heading("port", p.host_if, !!p.drift?.length),
          rows([
            ["network", link("network", n.name)],
            ["sandbox", link("sandbox", p.sandbox)],
            ["veth pair", `${p.host_if} (ifindex ${p.host_ifindex}) on ${n.bridge} ⇄ ${p.ifname} in ${p.sandbox}`],
            ["addresses", (p.ips ?? []).join(", ")],
            ["MAC", p.mac],
            ["DNS names", (p.names ?? []).join(", ")],
            ["published", (p.published ?? []).join(", ")]
          ]),
          drift(p.drift)
        );
        break;
      }
      break;
    }
  }
  if (parts.length === 0) {
    panel.append(el("p", "empty", `${sel.kind} ${sel.name} is gone.`));
    return;
  }
  for (const p of parts) if (p) panel.append(p);
}

// src/picture.ts
var objects = "g.host, g.network, g.sandbox, g.port";
var svgNS = "http://www.w3.org/2000/svg";
var root = null;
var shown = /* @__PURE__ */ new Map();
var path = null;
var key = (kind, name) => `${kind}:${name}`;
function parse(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const err = doc.querySelector("parsererror");
  if (err) throw new Error(`the server's picture is not valid SVG: ${err.textContent ?? ""}`);
  return doc.documentElement;
}
function decorate(el2) {
  if (!el2.classList.contains("port")) return;
  for (const line of el2.querySelectorAll(":scope > line")) {
    const hit = line.cloneNode();
    hit.setAttribute("class", "hit");
    hit.setAttribute("stroke", "transparent");
    hit.setAttribute("stroke-width", "12");
    hit.removeAttribute("stroke-opacity");
    line.after(hit);
  }
}
function update(container, pic) {
  let first = false;
  if (!root || !container.contains(root)) {
    root = document.importNode(parse(pic.head + "</svg>"), true);
    for (const n of Array.from(root.childNodes)) if (n.nodeType === Node.TEXT_NODE) n.remove();
    shown = /* @__PURE__ */ new Map();
    container.replaceChildren(root);
    first = true;
  }
  const svg2 = root;
  for (const a of ["width", "height"]) {
    if (svg2.getAttribute(a) !== String(pic[a])) svg2.setAttribute(a, String(pic[a]));
  }
  const box = `0 0 ${pic.width} ${pic.height}`;
  if (svg2.getAttribute("viewBox") !== box) svg2.setAttribute("viewBox", box);
  const changed = pic.parts.filter((p) => shown.get(key(p.kind, p.name))?.svg !== p.svg);
  const fresh = /* @__PURE__ */ new Map();
  if (changed.length > 0) {
    const doc = parse(`<svg xmlns="${svgNS}">${changed.map((p) => p.svg).join("")}</svg>`);
    const els = Array.from(doc.children);
    if (els.length !== changed.length) throw new Error(`the server's picture has ${els.length} elements for ${changed.length} parts`);
    els.forEach((el2, i) => {
      const imported = document.importNode(el2, true);
      decorate(imported);
      fresh.set(key(changed[i].kind, changed[i].name), imported);
    });
  }
  const next = /* @__PURE__ */ new Map();
  for (const p of pic.parts) next.set(key(p.kind, p.name), { svg: p.svg, el: fresh.get(key(p.kind, p.name)) ?? shown.get(key(p.kind, p.name)).el });
  let removed = 0;
  for (const [k, s] of shown) {
    if (next.get(k)?.el !== s.el) {
      s.el.remove();
      if (!next.has(k)) removed++;
    }
  }
  let cursor = svg2.firstElementChild?.nextSibling ?? null;
  for (const p of pic.parts) {
    const el2 = next.get(key(p.kind, p.name)).el;
    if (el2 === cursor) cursor = cursor.nextSibling;
    else svg2.insertBefore(el2, cursor);
  }
  shown = next;
  markPath(svg2);
  return { svg: svg2, first, changed: changed.length, removed };
}
function objectAt(target) {
  if (!(target instanceof Element)) return null;
  const g = target.closest(objects);
  if (!g) return null;
  const kind = g.classList[0];
  return { kind, name: kind === "host" ? "" : g.getAttribute("data-name") ?? "" };
}
function element(kind, name) {
  return shown.get(key(kind, kind === "host" ? "" : name))?.el ?? null;
}
function mark(svg2, sel) {
  if (!svg2) return;
  for (const g of svg2.querySelectorAll(".selected")) g.classList.remove("selected");
  if (sel) element(sel.kind, sel.name)?.classList.add("selected");
}
function reveal(svg2, sel) {
  if (svg2) element(sel.kind, sel.name)?.scrollIntoView({ block: "nearest", inline: "center" });
}
function setFit(svg2, fit2) {
  if (!svg2) return;
  svg2.classList.toggle("fit", fit2);
}
function setPath(p) {
  path = p;
  if (root) markPath(root);
}
function markPath(svg2) {
  for (const g of svg2.querySelectorAll(".on-path, .path-stop")) g.classList.remove("on-path", "path-stop");
  svg2.classList.toggle("tracing", path !== null);
  if (!path) return;
  for (const s of path.steps) element(s.kind, s.name)?.classList.add("on-path");
  if (path.stop) element(path.stop.kind, path.stop.name)?.classList.add("path-stop");
}
function revealPath() {
  const s = path?.steps[0];
  if (s) element(s.kind, s.name)?.scrollIntoView({ block: "nearest", inline: "center" });
}

// src/trace.ts
function setupTrace(cfg) {
  const section = document.getElementById("trace");
  const form = document.getElementById("trace-form");
  const out = document.getElementById("trace-result");
  const clear = document.getElementById("trace-clear");
  if (!cfg.trace || !section || !form || !out || !clear) return;
  section.hidden = false;
  clear.addEventListener("click", () => {
    setPath(null);
    out.replaceChildren();
    clear.hidden = true;
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    out.textContent = "tracing…";
    setPath(null);
    postJSON("/api/trace", { src: data.get("src"), dst: data.get("dst") }).then((t) => {
      const reached = /* @__PURE__ */ new Map();
      for (const s of t.path?.steps ?? []) {
        if (s.hop < 0 || s.kind === "hostlink") continue;
        reached.set(s.hop, s.kind === "host" ? "the host" : `${s.kind} ${s.name}`);
      }
      const ol = document.createElement("ol");
      (t.hops ?? []).forEach((h, i) => {
        const li = document.createElement("li");
        li.textContent = h.text ?? "";
        if (h.differs) li.className = "drifted";
        if (reached.has(i)) li.dataset.reaches = reached.get(i);
        ol.append(li);
      });
      const verdict = document.createElement("p");
      verdict.className = `verdict verdict-${t.verdict?.result ?? "unknown"}`;
      verdict.textContent = t.verdict?.sentence ?? t.verdict?.result ?? "";
      out.replaceChildren(ol, verdict);
      setPath(t.path ?? null);
      revealPath();
      clear.hidden = !t.path;
    }).catch((err) => {
      out.textContent = String(err instanceof Error ? err.message : err);
    });
  });
}

// src/main.ts
var stats = {
  renders: 0,
  firstRenderMs: null,
  lastFetchMs: null,
  lastDrawMs: null,
  lastPatchMs: null,
  lastChanged: null,
  lastRemoved: null,
  lastEventToScreenMs: null,
  events: 0
};
window.pontoonPage = stats;
var backstopMs = 15e3;
var maxEvents = 100;
var $ = (id) => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page has no #${id}`);
  return e;
};
var topo = null;
var lastRaw = "";
var svg = null;
var selected = null;
var fit = false;
var stopped = false;
function setStatus(state, text) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}
var painted = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve())));
var settleMs = 10;
var inflight = false;
var again = false;
var askedAt = null;
function refresh(reason) {
  if (reason === "event" && askedAt === null) askedAt = performance.now();
  if (inflight) {
    again = true;
    return;
  }
  inflight = true;
  const run = () => {
    void load().finally(() => {
      inflight = false;
      if (again && !stopped) {
        again = false;
        refresh("start");
      }
    });
  };
  if (reason === "event") setTimeout(run, settleMs);
  else run();
}
async function load() {
  const since = askedAt;
  askedAt = null;
  const t0 = performance.now();
  try {
    const { view, raw } = await getView();
    const t1 = performance.now();
    if (raw === lastRaw) return;
    lastRaw = raw;
    stats.lastFetchMs = t1 - t0;
    topo = view.topology;
    const drawn = update($("picture"), view.picture);
    svg = drawn.svg;
    if (drawn.first) {
      setFit(svg, fit);
      $("picture").scrollLeft = ($("picture").scrollWidth - $("picture").clientWidth) / 2;
    }
    mark(svg, selected);
    summary(topo);
    names(topo);
    show($("details"), topo, selected);
    stats.lastPatchMs = performance.now() - t1;
    stats.lastChanged = drawn.changed;
    stats.lastRemoved = drawn.removed;
    await painted();
    const t2 = performance.now();
    stats.lastDrawMs = t2 - t1;
    stats.renders++;
    stats.firstRenderMs ??= t2;
    if (since !== null) stats.lastEventToScreenMs = t2 - since;
    document.documentElement.dataset.renders = String(stats.renders);
  } catch (err) {
    failed(err);
  }
}
function failed(err) {
  if (err instanceof HttpError && err.status === 401) {
    stopped = true;
    setStatus("refused", "not authorized");
    $("picture").replaceChildren(message(err.message));
    return;
  }
  if (err instanceof HttpError && err.status === 503) {
    setStatus("starting", "daemon starting…");
    return;
  }
  console.error(err);
}
function message(text) {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = text;
  return p;
}
function summary(t) {
  $("host").textContent = `host ${t.host}`;
  const nets = t.networks ?? [];
  const ports = nets.reduce((n, x) => n + (x.ports?.length ?? 0), 0);
  $("counts").textContent = `${nets.length} networks · ${t.sandboxes?.length ?? 0} sandboxes · ${ports} ports`;
  const items = [];
  for (const d of t.drift ?? []) items.push([{ kind: "host", name: "" }, `host: ${d}`]);
  for (const n of nets) {
    for (const d of n.drift ?? []) items.push([{ kind: "network", name: n.name }, `network ${n.name}: ${d}`]);
    for (const p of n.ports ?? [])
      for (const d of p.drift ?? []) items.push([{ kind: "port", name: p.host_if }, `port ${p.host_if} of ${p.sandbox} on ${n.name}: ${d}`]);
  }
  for (const s of t.sandboxes ?? [])
    for (const d of s.drift ?? []) items.push([{ kind: "sandbox", name: s.name }, `sandbox ${s.name}: ${d}`]);
  const list = $("drift-list");
  list.replaceChildren(
    ...items.map(([sel, text]) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link";
      b.dataset.select = `${sel.kind}:${sel.name}`;
      b.textContent = text;
      li.append(b);
      return li;
    })
  );
  $("drift").hidden = items.length === 0;
}
var known = /* @__PURE__ */ new Map();
function names(t) {
  const next = /* @__PURE__ */ new Map();
  for (const n of t.networks ?? []) {
    next.set(n.name, { kind: "network", name: n.name });
    for (const p of n.ports ?? []) next.set(p.host_if, { kind: "port", name: p.host_if });
  }
  for (const s of t.sandboxes ?? []) next.set(s.name, { kind: "sandbox", name: s.name });
  const same = next.size === known.size && [...next.keys()].every((k) => known.has(k));
  known = next;
  if (same) return;
  $("names").replaceChildren(
    ...[...next.keys()].sort().map((k) => {
      const o = document.createElement("option");
      o.value = k;
      return o;
    })
  );
}
function findByName() {
  const input = $("find");
  const sel = known.get(input.value.trim());
  input.classList.toggle("not-found", input.value.trim() !== "" && !sel);
  if (!sel) return;
  select(sel);
  reveal(svg, sel);
}
function select(sel) {
  selected = sel;
  mark(svg, sel);
  show($("details"), topo, sel);
}
function addEvent(ev) {
  const list = $("events");
  const li = document.createElement("li");
  li.className = `ev-${ev.kind}`;
  const time = document.createElement("time");
  time.dateTime = ev.time;
  time.textContent = new Date(ev.time).toLocaleTimeString();
  const kind = document.createElement("span");
  kind.className = "ev-kind";
  kind.textContent = ev.kind;
  const what = [ev.network && `network ${ev.network}`, ev.sandbox && `sandbox ${ev.sandbox}`, ev.op, ev.detail].filter(Boolean).join(" · ");
  const lost = ev.kind === "gap" ? `${ev.lost ?? 0} events lost` : "";
  li.append(time, " ", kind, " ", what || lost);
  list.prepend(li);
  while (list.childElementCount > maxEvents) list.lastElementChild?.remove();
}
async function follow() {
  let lastID = null;
  let delay = 500;
  while (!stopped) {
    const ctl = new AbortController();
    try {
      await followEvents(
        lastID,
        () => {
          setStatus("live", "live");
          delay = 500;
          refresh("start");
        },
        (ev) => {
          stats.events++;
          if (ev.kind !== "gap") lastID = ev.id;
          addEvent(ev);
          refresh("event");
        },
        ctl.signal
      );
      setStatus("retrying", "reconnecting…");
    } catch (err) {
      failed(err);
      if (stopped) return;
      if (!(err instanceof HttpError && err.status === 503)) setStatus("retrying", "reconnecting…");
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 8e3);
  }
}
function wire() {
  $("picture").addEventListener("click", (e) => {
    const sel = objectAt(e.target);
    select(sel);
  });
  document.body.addEventListener("click", (e) => {
    const b = e.target instanceof Element ? e.target.closest("[data-select]") : null;
    if (!b?.dataset.select) return;
    const [kind, ...rest] = b.dataset.select.split(":");
    select({ kind, name: rest.join(":") });
  });
  $("find").addEventListener("change", findByName);
  $("find").addEventListener("keydown", (e) => {
    if (e.key === "Enter") findByName();
  });
  const zoom = $("zoom");
  zoom.addEventListener("click", () => {
    fit = !fit;
    setFit(svg, fit);
    zoom.textContent = fit ? "Actual size" : "Fit all";
  });
  setInterval(() => {
    if (!stopped && document.visibilityState === "visible") refresh("backstop");
  }, backstopMs);
}
function main() {
  wire();
  getConfig().then((cfg) => {
    $("status").title = `pontoon ${cfg.version}`;
    setupTrace(cfg);
  }).catch(failed);
  void follow();
}
main();
