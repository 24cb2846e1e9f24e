// Calls to the page's server (package web): same origin, with the cookie
// that the token set.

import type { Config, ErrorBody, PontoonEvent, View } from "./types";

/** An answer other than 2xx, with the server's message. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function failure(res: Response): Promise<HttpError> {
  let msg = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as ErrorBody;
    if (body.error) msg = body.error;
  } catch {
    // Not JSON: keep the status line.
  }
  return new HttpError(res.status, msg);
}

async function getJSON<T>(path: string): Promise<T> {
  const res = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export const getConfig = (): Promise<Config> => getJSON<Config>("/api/config");
/** A snapshot of the topology and its picture, with its text to compare. */
export async function getView(): Promise<{ view: View; raw: string }> {
  const res = await fetch("/api/topology", { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw await failure(res);
  const raw = await res.text();
  return { view: JSON.parse(raw) as View, raw };
}

export async function postJSON<T>(path: string, body: unknown): Promise<T> {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/**
 * Follows the event feed (JSON lines) until it ends or signal aborts.
 * onOpen runs once the server answered, before any new event: a snapshot
 * taken then misses nothing that the stream will not report.
 */
export async function followEvents(
  since: number | null,
  onOpen: () => void,
  onEvent: (ev: PontoonEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const q = since === null ? "follow=true" : `follow=true&since=${since}`;
  const res = await fetch(`/api/events?${q}`, { credentials: "same-origin", cache: "no-store", signal });
  if (!res.ok || !res.body) throw await failure(res);
  onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onEvent(JSON.parse(line) as PontoonEvent);
    }
  }
}
