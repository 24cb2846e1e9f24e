// THE TRACE FORM. It shows only when the server says that it serves
// POST /api/trace (the daemon has POST /v1/trace and runs with
// --web-trace). It sends {"src", "dst"} (a TraceSpec, docs/api.md) and
// lists the hops' text and the verdict. Drawing the path on the picture
// is left to the trace feature, which knows what its hops name.

import { postJSON } from "./api";
import type { Config } from "./types";

interface TraceAnswer {
  hops?: { text?: string; differs?: boolean }[];
  verdict?: { result?: string; sentence?: string };
}

export function setupTrace(cfg: Config): void {
  const section = document.getElementById("trace");
  const form = document.getElementById("trace-form") as HTMLFormElement | null;
  const out = document.getElementById("trace-result");
  if (!cfg.trace || !section || !form || !out) return;
  section.hidden = false;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    out.textContent = "tracing…";
    postJSON<TraceAnswer>("/api/trace", { src: data.get("src"), dst: data.get("dst") })
      .then((t) => {
        const ol = document.createElement("ol");
        for (const h of t.hops ?? []) {
          const li = document.createElement("li");
          li.textContent = h.text ?? "";
          if (h.differs) li.className = "drifted";
          ol.append(li);
        }
        const verdict = document.createElement("p");
        verdict.className = "verdict";
        verdict.textContent = t.verdict?.sentence ?? t.verdict?.result ?? "";
        out.replaceChildren(ol, verdict);
      })
      .catch((err: unknown) => {
        out.textContent = String(err instanceof Error ? err.message : err);
      });
  });
}
