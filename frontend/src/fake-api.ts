// A stand-in for the API at the fetch boundary, for component tests: routes answer by method and
// path, and every request is recorded with its headers. The live stream stays open and silent.
import { vi } from "vitest";

export interface Call {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

/** An answer by status and JSON body, or a whole Response (a stream the test writes into). */
type Handler = (call: Call) => { status: number; body?: unknown } | Response | undefined;

export function json(status: number, body?: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

export function fakeApi(handler: Handler) {
  const calls: Call[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), "http://localhost");
    const call: Call = {
      method: init.method ?? "GET",
      path: url.pathname + url.search,
      headers: (init.headers as Record<string, string>) ?? {},
      body: init.body ? JSON.parse(String(init.body)) : undefined,
    };
    calls.push(call);
    const answer = handler(call);
    if (answer instanceof Response) return answer;
    if (answer) return json(answer.status, answer.body);
    if (url.pathname.endsWith("/stream")) return new Response(new ReadableStream(), { status: 200 });
    return json(404, { code: "not_found", message: "Not Found" });
  });
  vi.stubGlobal("fetch", fetchMock);
  return calls;
}

/** A live stream the test writes events into, as the API's `text/event-stream` answer. */
export function fakeStream() {
  const encoder = new TextEncoder();
  let sink: ReadableStreamDefaultController<Uint8Array> | null = null;
  const response = new Response(new ReadableStream<Uint8Array>({ start: (c) => void (sink = c) }), {
    status: 200,
    headers: { "content-type": "text/event-stream" },
  });
  const send = (event: string, data: unknown) => sink?.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
  return { response, send };
}
