import { act, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { App, describeConnection } from "./App";
import { authHeaders, observe, setApiKey } from "./api";
import { connection } from "./connection";
import { fakeApi } from "./fake-api";

afterEach(() => {
  vi.unstubAllGlobals();
  setApiKey("");
  connection.set({ api: "unknown", stream: "connecting", authRequired: false });
  window.history.replaceState(null, "", "/");
});

describe("connection indicator", () => {
  it("puts a stopped API before anything else", () => {
    expect(describeConnection({ api: "down", stream: "open", authRequired: true }).text).toMatch(/API unreachable/);
    expect(describeConnection({ api: "up", stream: "reconnecting", authRequired: false }).level).toBe("warn");
    expect(describeConnection({ api: "up", stream: "open", authRequired: false })).toEqual({ level: "ok", text: "Live" });
  });

  it("says the API is unreachable when the proxy answers 502", async () => {
    fakeApi(() => ({ status: 502, body: { code: "api_unreachable", message: "The API does not answer." } }));
    render(<App />);
    expect(await screen.findByText(/API unreachable/)).toBeTruthy();
  });
});

describe("API key", () => {
  it("asks for a key after a 401 and sends it on every later request", async () => {
    const calls = fakeApi((call) =>
      call.headers.Authorization === "Bearer s3cret" ? undefined : { status: 401, body: { code: "unauthorized", message: "API key required" } },
    );
    render(<App />);
    expect(await screen.findByText(/requires a key/)).toBeTruthy();
    await userEvent.type(screen.getByLabelText("API key", { selector: "input" }), "s3cret");
    await userEvent.click(screen.getByRole("button", { name: "Save key" }));
    await waitFor(() => expect(screen.queryByText(/requires a key/)).toBeNull());
    const before = calls.length;
    await act(async () => {
      await new Promise((resolve) => setTimeout(resolve, 2200)); // the workers poll comes round
    });
    const later = calls.slice(before);
    expect(later.length).toBeGreaterThan(0);
    expect(later.every((c) => c.headers.Authorization === "Bearer s3cret")).toBe(true);
  });
});

describe("a 401 on its way while the key is saved", () => {
  it("does not ask for the key again; a 401 to the new key does", () => {
    const sentWithoutKey = authHeaders();
    connection.set({ authRequired: true });
    setApiKey("s3cret");
    observe(new Response(null, { status: 401 }), sentWithoutKey);
    expect(connection.get().authRequired).toBe(false);
    observe(new Response(null, { status: 401 }), authHeaders());
    expect(connection.get().authRequired).toBe(true);
  });
});

describe("navigation", () => {
  it("marks the current page and switches pages without a reload", async () => {
    fakeApi(() => undefined);
    render(<App />);
    expect(screen.getByRole("heading", { level: 1 }).textContent).toBe("Dashboard");
    await userEvent.click(screen.getByRole("link", { name: "DLQ" }));
    expect(screen.getByRole("heading", { level: 1 }).textContent).toBe("Dead-letter queue");
    expect(screen.getByRole("link", { name: "DLQ" }).getAttribute("aria-current")).toBe("page");
    expect(window.location.pathname).toBe("/dlq");
  });
});
