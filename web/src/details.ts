// The details panel: what the topology JSON says about the selected
// object. Text goes in with textContent only, never as HTML.

import type { Selection } from "./picture";
import type { Topology, TopoPort } from "./types";

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A link that selects another object (main.ts listens for data-select). */
function link(kind: Selection["kind"], name: string, text = name): HTMLElement {
  const a = el("button", "link", text);
  a.type = "button";
  a.dataset.select = `${kind}:${name}`;
  return a;
}

type Value = string | number | Node | (string | Node)[] | null | undefined;

function rows(items: [string, Value][]): HTMLElement {
  const dl = el("dl");
  for (const [k, v] of items) {
    if (v === null || v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    dl.append(el("dt", undefined, k));
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

function drift(list: string[] | undefined): HTMLElement | null {
  if (!list?.length) return null;
  const ul = el("ul", "drift-items");
  for (const d of list) ul.append(el("li", undefined, d));
  return ul;
}

function heading(kind: string, name: string, drifted: boolean): HTMLElement {
  const h = el("h2", drifted ? "drifted" : undefined);
  h.append(el("span", "kind", kind + " "), name);
  return h;
}

function portsOf(t: Topology, sandbox: string): { network: string; port: TopoPort }[] {
  const out: { network: string; port: TopoPort }[] = [];
  for (const n of t.networks ?? []) {
    for (const p of n.ports ?? []) if (p.sandbox === sandbox) out.push({ network: n.name, port: p });
  }
  return out;
}

function portLine(network: string, p: TopoPort): HTMLElement {
  const li = el("li", p.drift?.length ? "drifted" : undefined);
  li.append(
    link("network", network),
    ` ${p.ifname} ${(p.ips ?? []).join(", ")} `,
    // A direct link's or a macvlan's endpoint has no host end.
    p.host_if ? link("port", p.host_if, `${p.host_if} (ifindex ${p.host_ifindex})`) : "no host end",
  );
  return li;
}

/** Fills panel with the details of sel in t. */
export function show(panel: HTMLElement, t: Topology | null, sel: Selection | null): void {
  panel.replaceChildren();
  if (!t || !sel) {
    panel.append(el("p", "empty", "Nothing selected. Click a network, a sandbox or a port line."));
    return;
  }
  const parts: (Node | null)[] = [];
  switch (sel.kind) {
    case "host": {
      parts.push(
        heading("host", t.host, !!t.drift?.length),
        rows([
          ["uplinks", (t.uplinks ?? []).map((u) => `${u.name} (ifindex ${u.ifindex}, mtu ${u.mtu})`).join(", ")],
          ["networks", (t.networks ?? []).map((n) => link("network", n.name))],
          [
            "repairs",
            Object.entries(t.repairs ?? {})
              .map(([k, v]) => `${k} ${v}`)
              .join(", "),
          ],
        ]),
        drift(t.drift),
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
          ["ports", String(n.ports?.length ?? 0)],
        ]),
        drift(n.drift),
        n.ports?.length ? ports : null,
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
          ["networks", (s.networks ?? []).map((n) => link("network", n))],
        ]),
        drift(s.drift),
        eps.childElementCount ? eps : null,
      );
      break;
    }
    case "port": {
      for (const n of t.networks ?? []) {
        // The picture names a port by its host end, or sandbox/ifname
        // when it has none (topoview.PortKey).
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
            ["published", (p.published ?? []).join(", ")],
          ]),
          drift(p.drift),
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
