// The live stream, read with fetch instead of EventSource: EventSource cannot send the API key
// header, and fetch lets us see the status (401, 502) and reconnect on our own terms.
import { authHeaders, KEY_CHANGED, observe } from "./api";
import { connection } from "./connection";

export interface SseMessage {
  event: string;
  data: string;
}

/** Split the text received so far into complete events; `rest` is an event still arriving. */
export function parseSse(buffer: string): { messages: SseMessage[]; rest: string } {
  const normalized = buffer.replace(/\r\n?/g, "\n");
  const blocks = normalized.split("\n\n");
  const rest = blocks.pop() ?? "";
  const messages: SseMessage[] = [];
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) messages.push({ event, data: data.join("\n") });
  }
  return { messages, rest };
}

/** Wait before reconnect n (0-based): 0.5 s, 1 s, 2 s … capped at 10 s. */
export function backoffMs(attempt: number): number {
  return Math.min(10_000, 500 * 2 ** attempt);
}

export interface StreamOptions {
  url: string;
  onMessage: (message: SseMessage) => void;
  /** With no byte for this long (pings come every SSE_KEEPALIVE_SECONDS) the stream is presumed dead. */
  idleMs?: number;
}

/** Wait before a reconnect; a new API key or a stop ends the wait early. */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener(KEY_CHANGED, done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener(KEY_CHANGED, done);
    signal.addEventListener("abort", done);
  });

async function readBody(body: ReadableStream<Uint8Array>, options: StreamOptions, abort: AbortController) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let watchdog = setTimeout(() => abort.abort(), options.idleMs ?? 45_000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => abort.abort(), options.idleMs ?? 45_000);
      connection.set({ stream: "open", api: "up" });
      const parsed = parseSse(buffer + decoder.decode(value, { stream: true }));
      buffer = parsed.rest;
      parsed.messages.forEach(options.onMessage);
    }
  } finally {
    clearTimeout(watchdog);
  }
}

async function connectOnce(options: StreamOptions, stop: AbortSignal): Promise<boolean> {
  const abort = new AbortController();
  const onStop = () => abort.abort();
  stop.addEventListener("abort", onStop);
  try {
    const headers = authHeaders();
    const response = observe(await fetch(options.url, { headers, signal: abort.signal }), headers);
    if (!response.ok || !response.body) return false;
    await readBody(response.body, options, abort);
    return true;
  } catch {
    if (!stop.aborted && abort.signal.aborted === false) connection.set({ api: "down" });
    return false;
  } finally {
    stop.removeEventListener("abort", onStop);
  }
}

/** Keep the stream open until `stop` aborts: reconnect with backoff after any end or error. */
export async function runStream(options: StreamOptions, stop: AbortSignal): Promise<void> {
  let failures = 0;
  while (!stop.aborted) {
    connection.set({ stream: failures ? "reconnecting" : "connecting" });
    const opened = await connectOnce(options, stop);
    if (stop.aborted) return;
    connection.set({ stream: "reconnecting" });
    failures = opened ? 1 : failures + 1;
    await sleep(backoffMs(failures - 1), stop);
  }
}
