// THE TRACE FORM. It shows only when the server says that it serves
// POST /api/trace (the daemon has POST /v1/trace and runs with
// --web-trace). It sends {"src", "dst"} (a TraceSpec, docs/api.md), lists
// the hops' text and the verdict, and draws the path on the picture: the
// objects the packet crosses (sandbox, veth ends, bridges, the host and
// the line to it) in blue, and the one where it is dropped in red.

import { postJSON } from "./api";
import * as picture from "./picture";
import type { Config, TraceAnswer } from "./types";

export function setupTrace(cfg: Config): void {
  const section = document.getElementById("trace");
  const form = document.getElementById("trace-form") as HTMLFormElement | null;
  const out = document.getElementById("trace-result");
  const clear = document.getElementById("trace-clear") as HTMLButtonElement | null;
  if (!cfg.trace || !section || !form || !out || !clear) return;
  section.hidden = false;
  clear.addEventListener("click", () => {
    picture.setPath(null);
    out.replaceChildren();
    clear.hidden = true;
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    out.textContent = "tracing…";
    picture.setPath(null);
    postJSON<TraceAnswer>("/api/trace", { src: data.get("src"), dst: data.get("dst") })
      .then((t) => {
        // The hops that reached an object of the picture say which.
        const reached = new Map<number, string>();
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
        picture.setPath(t.path ?? null);
        picture.revealPath();
        clear.hidden = !t.path;
      })
      .catch((err: unknown) => {
        out.textContent = String(err instanceof Error ? err.message : err);
      });
  });
}
