import { describe, expect, it, vi } from "vitest";
import { backoffMs, parseSse } from "./sse";

describe("parseSse", () => {
  it("splits complete events and keeps the partial one for the next chunk", () => {
    const first = parseSse('event: snapshot\ndata: {"a":1}\n\nevent: transition\ndata: {"b"');
    expect(first.messages).toEqual([{ event: "snapshot", data: '{"a":1}' }]);
    const second = parseSse(first.rest + ':2}\n\n');
    expect(second.messages).toEqual([{ event: "transition", data: '{"b":2}' }]);
    expect(second.rest).toBe("");
  });

  it("accepts CRLF, joins multi-line data, ignores comments and events without data", () => {
    const { messages } = parseSse(": keepalive\r\n\r\nevent: ping\r\ndata: one\r\ndata: two\r\n\r\nevent: empty\r\n\r\n");
    expect(messages).toEqual([{ event: "ping", data: "one\ntwo" }]);
  });

  it("names an event without an event field 'message'", () => {
    expect(parseSse("data:x\n\n").messages).toEqual([{ event: "message", data: "x" }]);
  });
});

describe("backoffMs", () => {
  it("doubles from half a second and stops at ten", () => {
    expect([0, 1, 2, 3, 4, 5, 10].map(backoffMs)).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000]);
  });
});

describe("runStream", () => {
  it("reconnects by itself after the stream ends and after a gateway error, and says so", async () => {
    const { runStream } = await import("./sse");
    const { connection } = await import("./connection");
    const encoder = new TextEncoder();
    const once = (text: string) =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode(text));
          controller.close();
        },
      });
    const answers = [
      () => new Response(once('event: snapshot\ndata: {"n":1}\n\n'), { status: 200 }),
      () => new Response(JSON.stringify({ code: "api_unreachable", message: "down" }), { status: 502 }),
      () => new Response(once('event: snapshot\ndata: {"n":2}\n\nevent: tran'), { status: 200 }),
    ];
    const states: string[] = [];
    const unsubscribe = connection.subscribe(() => states.push(`${connection.get().api}/${connection.get().stream}`));
    const fetchMock = vi.fn(async () => (answers.shift() ?? (() => new Response(new ReadableStream(), { status: 200 })))());
    vi.stubGlobal("fetch", fetchMock);
    const received: string[] = [];
    const stop = new AbortController();
    void runStream({ url: "/stream", onMessage: (m) => received.push(m.data) }, stop.signal);
    await vi.waitFor(() => expect(received).toEqual(['{"n":1}', '{"n":2}']), { timeout: 5000 });
    stop.abort();
    unsubscribe();
    vi.unstubAllGlobals();
    expect(fetchMock).toHaveBeenCalledTimes(3);
    expect(states).toContain("down/reconnecting"); // the 502 in between
    expect(states.at(-1)).toMatch(/^up\//);
  });
});
