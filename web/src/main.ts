// The page of `pontoon daemon --web`: the host's topology as a picture,
// kept live by the event feed. Each event asks for a new snapshot of the
// topology; requests are coalesced, so a burst of events (500 sandboxes
// created by a script) costs a few snapshots, not one each. A snapshot
// changes only the parts of the picture that differ (picture.ts).

import { HttpError, followEvents, getConfig, getView } from "./api";
import * as details from "./details";
import * as picture from "./picture";
import type { Selection } from "./picture";
import { setupTrace } from "./trace";
import type { PontoonEvent, Topology } from "./types";

/** Timings of the page, read by the browser test and its benchmark. */
export interface PageStats {
  /** Snapshots drawn. */
  renders: number;
  /** ms from navigation start to the first picture on screen. */
  firstRenderMs: number | null;
  /** ms the last snapshot took to arrive (request to parsed JSON). */
  lastFetchMs: number | null;
  /** ms the last picture took to go on screen (DOM and a frame). */
  lastDrawMs: number | null;
  /** ms the last picture took in the page's own code (the DOM changes, before the browser paints). */
  lastPatchMs: number | null;
  /** Parts of the picture the last snapshot put in (new or changed), and removed. */
  lastChanged: number | null;
  lastRemoved: number | null;
  /** ms from the event that asked for the last snapshot to its picture on screen. */
  lastEventToScreenMs: number | null;
  /** Events received. */
  events: number;
}

declare global {
  interface Window {
    pontoonPage: PageStats;
  }
}

const stats: PageStats = {
  renders: 0,
  firstRenderMs: null,
  lastFetchMs: null,
  lastDrawMs: null,
  lastPatchMs: null,
  lastChanged: null,
  lastRemoved: null,
  lastEventToScreenMs: null,
  events: 0,
};
window.pontoonPage = stats;

/** A backstop for drift no event reports (self-healing off). */
const backstopMs = 15_000;
const maxEvents = 100;

const $ = (id: string): HTMLElement => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page has no #${id}`);
  return e;
};

let topo: Topology | null = null;
let lastRaw = "";
let svg: SVGSVGElement | null = null;
let selected: Selection | null = null;
let fit = false;
let stopped = false;

function setStatus(state: "connecting" | "live" | "retrying" | "starting" | "refused", text: string): void {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}

/** Waits until the browser has drawn the current DOM. */
const painted = (): Promise<void> =>
  new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve())));

// Coalesced refresh: at most one snapshot in flight, and one more after it
// when something happened meanwhile. An event waits a moment first: one
// change often comes as several events at once (sandbox-created, attached,
// published), and one snapshot then shows them all.
const settleMs = 10;
let inflight = false;
let again = false;
let askedAt: number | null = null; // when the oldest unserved event arrived

function refresh(reason: "event" | "start" | "backstop"): void {
  if (reason === "event" && askedAt === null) askedAt = performance.now();
  if (inflight) {
    again = true;
    return;
  }
  inflight = true;
  const run = (): void => {
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

async function load(): Promise<void> {
  const since = askedAt;
  askedAt = null;
  const t0 = performance.now();
  try {
    const { view, raw } = await getView();
    const t1 = performance.now();
    // Nothing changed (a backstop refresh, or an event whose change an
    // earlier snapshot already showed): leave the page alone.
    if (raw === lastRaw) return;
    lastRaw = raw;
    stats.lastFetchMs = t1 - t0;
    topo = view.topology;
    const drawn = picture.update($("picture"), view.picture);
    svg = drawn.svg;
    if (drawn.first) {
      picture.setFit(svg, fit);
      // A picture wider than the panel opens at its middle, where the
      // host and its networks are.
      $("picture").scrollLeft = ($("picture").scrollWidth - $("picture").clientWidth) / 2;
    }
    picture.mark(svg, selected);
    summary(topo);
    names(topo);
    details.show($("details"), topo, selected);
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

function failed(err: unknown): void {
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

function message(text: string): HTMLElement {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = text;
  return p;
}

/** The header's counts and the drift banner. */
function summary(t: Topology): void {
  $("host").textContent = `host ${t.host}`;
  const nets = t.networks ?? [];
  const ports = nets.reduce((n, x) => n + (x.ports?.length ?? 0), 0);
  $("counts").textContent = `${nets.length} networks · ${t.sandboxes?.length ?? 0} sandboxes · ${ports} ports`;
  const items: [Selection, string][] = [];
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
    }),
  );
  $("drift").hidden = items.length === 0;
}

/** The names the find box offers, and what each is. */
let known = new Map<string, Selection>();

function names(t: Topology): void {
  const next = new Map<string, Selection>();
  for (const n of t.networks ?? []) {
    next.set(n.name, { kind: "network", name: n.name });
    for (const p of n.ports ?? []) next.set(p.host_if, { kind: "port", name: p.host_if });
  }
  // A sandbox wins over a network of the same name.
  for (const s of t.sandboxes ?? []) next.set(s.name, { kind: "sandbox", name: s.name });
  const same = next.size === known.size && [...next.keys()].every((k) => known.has(k));
  known = next;
  if (same) return;
  $("names").replaceChildren(
    ...[...next.keys()].sort().map((k) => {
      const o = document.createElement("option");
      o.value = k;
      return o;
    }),
  );
}

function findByName(): void {
  const input = $("find") as HTMLInputElement;
  const sel = known.get(input.value.trim());
  input.classList.toggle("not-found", input.value.trim() !== "" && !sel);
  if (!sel) return;
  select(sel);
  picture.reveal(svg, sel);
}

function select(sel: Selection | null): void {
  selected = sel;
  picture.mark(svg, sel);
  details.show($("details"), topo, sel);
}

function addEvent(ev: PontoonEvent): void {
  const list = $("events");
  const li = document.createElement("li");
  li.className = `ev-${ev.kind}`;
  const time = document.createElement("time");
  time.dateTime = ev.time;
  time.textContent = new Date(ev.time).toLocaleTimeString();
  const kind = document.createElement("span");
  kind.className = "ev-kind";
  kind.textContent = ev.kind;
  const what = [ev.network && `network ${ev.network}`, ev.sandbox && `sandbox ${ev.sandbox}`, ev.op, ev.detail]
    .filter(Boolean)
    .join(" · ");
  const lost = ev.kind === "gap" ? `${ev.lost ?? 0} events lost` : "";
  li.append(time, " ", kind, " ", what || lost);
  list.prepend(li);
  while (list.childElementCount > maxEvents) list.lastElementChild?.remove();
}

async function follow(): Promise<void> {
  let lastID: number | null = null;
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
        ctl.signal,
      );
      setStatus("retrying", "reconnecting…");
    } catch (err) {
      failed(err);
      if (stopped) return;
      if (!(err instanceof HttpError && err.status === 503)) setStatus("retrying", "reconnecting…");
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 8000);
  }
}

function wire(): void {
  $("picture").addEventListener("click", (e) => {
    const sel = picture.objectAt(e.target);
    select(sel);
  });
  document.body.addEventListener("click", (e) => {
    const b = e.target instanceof Element ? e.target.closest<HTMLElement>("[data-select]") : null;
    if (!b?.dataset.select) return;
    const [kind, ...rest] = b.dataset.select.split(":");
    select({ kind: kind as Selection["kind"], name: rest.join(":") });
  });
  $("find").addEventListener("change", findByName);
  $("find").addEventListener("keydown", (e) => {
    if (e.key === "Enter") findByName();
  });
  const zoom = $("zoom");
  zoom.addEventListener("click", () => {
    fit = !fit;
    picture.setFit(svg, fit);
    zoom.textContent = fit ? "Actual size" : "Fit all";
  });
  setInterval(() => {
    if (!stopped && document.visibilityState === "visible") refresh("backstop");
  }, backstopMs);
}

function main(): void {
  wire();
  getConfig()
    .then((cfg) => {
      $("status").title = `pontoon ${cfg.version}`;
      setupTrace(cfg);
    })
    .catch(failed);
  void follow();
}

main();
