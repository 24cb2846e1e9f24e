// The picture: the SVG that the server draws (topoview.Draw) put into the
// page, with its objects made clickable. It comes as parts, one element
// each: <g class="host">, <g class="hostlink|network|sandbox|port"
// data-name=…>; drift is already drawn in red by the server.
//
// A new snapshot changes only what differs: the page keeps each part's
// text with its element, parses only the parts whose text changed (all in
// one parse), puts them in place of the old ones, removes the parts that
// are gone and moves none of the others unless their order changed. With
// 500 sandboxes a sandbox coming or going is a few elements of some 4000.

import type { Part, Picture, TracePath } from "./types";

export type Kind = "host" | "network" | "sandbox" | "port";

export interface Selection {
  kind: Kind;
  name: string;
}

const objects = "g.host, g.network, g.sandbox, g.port";
const svgNS = "http://www.w3.org/2000/svg";

/** What an update did, for the page's timings. */
export interface Drawn {
  svg: SVGSVGElement;
  /** The picture was made anew (the first one). */
  first: boolean;
  /** Parts parsed and put in (new or changed). */
  changed: number;
  /** Parts removed. */
  removed: number;
}

interface Shown {
  svg: string;
  el: Element;
}

let root: SVGSVGElement | null = null;
let shown = new Map<string, Shown>();
let path: TracePath | null = null;

const key = (kind: string, name: string): string => `${kind}:${name}`;

function parse(text: string): Element {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const err = doc.querySelector("parsererror");
  if (err) throw new Error(`the server's picture is not valid SVG: ${err.textContent ?? ""}`);
  return doc.documentElement;
}

/** A port is a thin line: give it a wider, invisible twin to click. */
function decorate(el: Element): void {
  if (!el.classList.contains("port")) return;
  for (const line of el.querySelectorAll<SVGLineElement>(":scope > line")) {
    const hit = line.cloneNode() as SVGLineElement;
    hit.setAttribute("class", "hit");
    hit.setAttribute("stroke", "transparent");
    hit.setAttribute("stroke-width", "12");
    hit.removeAttribute("stroke-opacity");
    line.after(hit);
  }
}

/** Brings the picture in container to pic, changing only what differs. */
export function update(container: HTMLElement, pic: Picture): Drawn {
  let first = false;
  if (!root || !container.contains(root)) {
    root = document.importNode(parse(pic.head + "</svg>"), true) as unknown as SVGSVGElement;
    for (const n of Array.from(root.childNodes)) if (n.nodeType === Node.TEXT_NODE) n.remove();
    shown = new Map();
    container.replaceChildren(root);
    first = true;
  }
  const svg = root;
  for (const a of ["width", "height"] as const) {
    if (svg.getAttribute(a) !== String(pic[a])) svg.setAttribute(a, String(pic[a]));
  }
  const box = `0 0 ${pic.width} ${pic.height}`;
  if (svg.getAttribute("viewBox") !== box) svg.setAttribute("viewBox", box);

  // The parts that are new or changed, parsed together.
  const changed: Part[] = pic.parts.filter((p) => shown.get(key(p.kind, p.name))?.svg !== p.svg);
  const fresh = new Map<string, Element>();
  if (changed.length > 0) {
    const doc = parse(`<svg xmlns="${svgNS}">${changed.map((p) => p.svg).join("")}</svg>`);
    const els = Array.from(doc.children);
    if (els.length !== changed.length) throw new Error(`the server's picture has ${els.length} elements for ${changed.length} parts`);
    els.forEach((el, i) => {
      const imported = document.importNode(el, true);
      decorate(imported);
      fresh.set(key(changed[i].kind, changed[i].name), imported);
    });
  }
  // Out with the old: parts gone, and the old elements of changed ones.
  const next = new Map<string, Shown>();
  for (const p of pic.parts) next.set(key(p.kind, p.name), { svg: p.svg, el: fresh.get(key(p.kind, p.name)) ?? shown.get(key(p.kind, p.name))!.el });
  let removed = 0;
  for (const [k, s] of shown) {
    if (next.get(k)?.el !== s.el) {
      s.el.remove();
      if (!next.has(k)) removed++;
    }
  }
  // In order, after the background: an element already in its place stays.
  let cursor: ChildNode | null = svg.firstElementChild?.nextSibling ?? null;
  for (const p of pic.parts) {
    const el = next.get(key(p.kind, p.name))!.el;
    if (el === cursor) cursor = cursor.nextSibling;
    else svg.insertBefore(el, cursor);
  }
  shown = next;
  markPath(svg);
  return { svg, first, changed: changed.length, removed };
}

/** The object under a click, if any. */
export function objectAt(target: EventTarget | null): Selection | null {
  if (!(target instanceof Element)) return null;
  const g = target.closest(objects);
  if (!g) return null;
  const kind = g.classList[0] as Kind;
  return { kind, name: kind === "host" ? "" : (g.getAttribute("data-name") ?? "") };
}

function element(kind: string, name: string): Element | null {
  return shown.get(key(kind, kind === "host" ? "" : name))?.el ?? null;
}

/** Marks the selected object (and only it) in the picture. */
export function mark(svg: SVGSVGElement | null, sel: Selection | null): void {
  if (!svg) return;
  for (const g of svg.querySelectorAll(".selected")) g.classList.remove("selected");
  if (sel) element(sel.kind, sel.name)?.classList.add("selected");
}

/** Scrolls the picture to show an object (the picture of 500 sandboxes is wide). */
export function reveal(svg: SVGSVGElement | null, sel: Selection): void {
  if (svg) element(sel.kind, sel.name)?.scrollIntoView({ block: "nearest", inline: "center" });
}

/** Fits the picture in its panel, or shows it at its own size. */
export function setFit(svg: SVGSVGElement | null, fit: boolean): void {
  if (!svg) return;
  svg.classList.toggle("fit", fit);
}

/**
 * Draws a trace's path on the picture (null: none): the objects it
 * crosses get class on-path, the one where it stops path-stop, and the
 * picture tracing, which fades the others. It stays through updates
 * until the next trace or clearPath.
 */
export function setPath(p: TracePath | null): void {
  path = p;
  if (root) markPath(root);
}

function markPath(svg: SVGSVGElement): void {
  for (const g of svg.querySelectorAll(".on-path, .path-stop")) g.classList.remove("on-path", "path-stop");
  svg.classList.toggle("tracing", path !== null);
  if (!path) return;
  for (const s of path.steps) element(s.kind, s.name)?.classList.add("on-path");
  if (path.stop) element(path.stop.kind, path.stop.name)?.classList.add("path-stop");
}

/** Scrolls the picture to the start of the path. */
export function revealPath(): void {
  const s = path?.steps[0];
  if (s) element(s.kind, s.name)?.scrollIntoView({ block: "nearest", inline: "center" });
}
