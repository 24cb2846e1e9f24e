// The picture: the SVG that the server draws (topoview.SVG) put into the
// page, with its objects made clickable. Its groups are
// <g class="host">, <g class="network|sandbox|port" data-name=…>; drift is
// already drawn in red by the server.

export type Kind = "host" | "network" | "sandbox" | "port";

export interface Selection {
  kind: Kind;
  name: string;
}

const objects = "g.host, g.network, g.sandbox, g.port";

/** Replaces the picture in container with the SVG text. */
export function draw(container: HTMLElement, svgText: string): SVGSVGElement {
  const doc = new DOMParser().parseFromString(svgText, "image/svg+xml");
  const err = doc.querySelector("parsererror");
  if (err) throw new Error(`the server's picture is not valid SVG: ${err.textContent ?? ""}`);
  const svg = document.importNode(doc.documentElement, true) as unknown as SVGSVGElement;
  // A port is a thin line: give each a wider, invisible twin to click.
  for (const line of svg.querySelectorAll<SVGLineElement>("g.port > line")) {
    const hit = line.cloneNode() as SVGLineElement;
    hit.setAttribute("class", "hit");
    hit.setAttribute("stroke", "transparent");
    hit.setAttribute("stroke-width", "12");
    line.after(hit);
  }
  container.replaceChildren(svg);
  return svg;
}

/** The object under a click, if any. */
export function objectAt(target: EventTarget | null): Selection | null {
  if (!(target instanceof Element)) return null;
  const g = target.closest(objects);
  if (!g) return null;
  const kind = g.classList[0] as Kind;
  return { kind, name: kind === "host" ? "" : (g.getAttribute("data-name") ?? "") };
}

function find(svg: SVGSVGElement, sel: Selection): Element | null {
  return sel.kind === "host"
    ? svg.querySelector("g.host")
    : svg.querySelector(`g.${sel.kind}[data-name="${CSS.escape(sel.name)}"]`);
}

/** Marks the selected object (and only it) in the picture. */
export function mark(svg: SVGSVGElement | null, sel: Selection | null): void {
  if (!svg) return;
  for (const g of svg.querySelectorAll(".selected")) g.classList.remove("selected");
  if (sel) find(svg, sel)?.classList.add("selected");
}

/** Scrolls the picture to show an object (the picture of 500 sandboxes is wide). */
export function reveal(svg: SVGSVGElement | null, sel: Selection): void {
  if (svg) find(svg, sel)?.scrollIntoView({ block: "nearest", inline: "center" });
}

/** Fits the picture in its panel, or shows it at its own size. */
export function setFit(svg: SVGSVGElement | null, fit: boolean): void {
  if (!svg) return;
  svg.classList.toggle("fit", fit);
}
