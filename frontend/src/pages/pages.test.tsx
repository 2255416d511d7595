import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeApi, fakeStream } from "../fake-api";
import { LiveProvider } from "../LiveContext";
import type { QueueStatus, TaskDetail } from "../types";
import { DashboardPage } from "./Dashboard";
import { DlqPage } from "./Dlq";
import { FlowDiagram } from "./FlowDiagram";
import { TaskDetailPage } from "./TaskDetail";
import { listUrl, TasksPage } from "./Tasks";

afterEach(() => {
  vi.unstubAllGlobals();
  window.history.replaceState(null, "", "/");
});

const status: QueueStatus = {
  queues: { primary: 4, retry: 1, scheduled: 2, dlq: 3 },
  states: { PENDING: 5, ACTIVE: 6, COMPLETED: 70, FAILED: 8, DLQ: 3, SCHEDULED: 2, CANCELLED: 0 },
  retry_ratio: 0.25,
  workers: 2,
};

function task(overrides: Partial<TaskDetail> = {}): TaskDetail {
  return {
    task_id: "t-1", task_type: "summarize", state: "COMPLETED", content: "Some text.", result: "A summary.",
    provider: "offline", retry_count: 1, max_retries: 3, last_error: null, error_type: null, worker: "w1",
    created_at: 1, updated_at: 2, started_at: 1, finished_at: 2, due_at: null, attempts: 2, progress: 100,
    current_step: null, model: null, usage: null, timings: { queued_ms: 5, run_ms: 1200, total_ms: 1300 },
    history: [{ at: 1, from: "", to: "PENDING" }, { at: 2, from: "ACTIVE", to: "SCHEDULED", error: "boom", error_type: "transient" }],
    errors: [{ at: 2, from: "ACTIVE", to: "SCHEDULED", error: "boom", error_type: "transient" }],
    ...overrides,
  };
}

describe("FlowDiagram", () => {
  const counts = {
    status,
    counters: { submitted: 90, completed: 70, retried: 4, postponed: 1, taken_primary: 80, taken_retry: 9, requeued: 2 },
  };

  it("shows a count on every node and edge", () => {
    const { container } = render(<FlowDiagram {...counts} />);
    const node = (id: string) => container.querySelector(`[data-node='${id}'] .node-count`)?.textContent;
    const edge = (id: string) => container.querySelector(`[data-edge='${id}'] .edge-count`)?.textContent;
    expect([node("submit"), node("primary"), node("retry"), node("active"), node("scheduled")]).toEqual(["90", "4", "1", "6", "2"]);
    expect([node("completed"), node("failed"), node("dlq")]).toEqual(["70", "8", "3"]);
    expect([edge("submit>primary"), edge("primary>active"), edge("retry>active"), edge("active>scheduled")]).toEqual(["90", "80", "9", "5"]);
    expect(container.querySelectorAll(".edge-count").length).toBe(container.querySelectorAll(".edge").length);
  });

  it("counts on each edge only its own transition", () => {
    // An operator's retry of a CANCELLED or FAILED task moves its own counter, not DLQ → Retry's.
    const { container } = render(
      <FlowDiagram status={status} counters={{ ...counts.counters, requeued_cancelled: 5, requeued_failed: 7 }} />,
    );
    const edge = (id: string) => container.querySelector(`[data-edge='${id}'] .edge-count`)?.textContent;
    expect([edge("dlq>retry"), edge("primary>active"), edge("retry>active")]).toEqual(["2", "80", "9"]);
  });

  it("waits for the figures instead of showing zeros", () => {
    const { container } = render(<FlowDiagram status={null} counters={null} />);
    const texts = [...container.querySelectorAll(".node-count, .edge-count")].map((e) => e.textContent);
    expect(new Set(texts)).toEqual(new Set(["…"]));
  });

  it("opens the task list filtered by the node's state", async () => {
    render(<FlowDiagram {...counts} />);
    await userEvent.click(screen.getByRole("link", { name: /^DLQ: 3/ }));
    expect(window.location.pathname + window.location.search).toBe("/tasks?state=DLQ");
  });
});

describe("TaskDetailPage", () => {
  const page = () =>
    render(
      <LiveProvider>
        <TaskDetailPage taskId="t-1" />
      </LiveProvider>,
    );
  const buttons = () => within(screen.getByTestId("task-actions")).queryAllByRole("button").map((b) => b.textContent);

  it("offers only the actions the API lists for the task's state", async () => {
    let current = task({ state: "COMPLETED", actions: ["delete"] });
    fakeApi((call) => (call.method === "GET" && call.path === "/api/v1/tasks/t-1" ? { status: 200, body: current } : undefined));
    const { unmount } = page();
    expect((await screen.findByTestId("summary")).textContent).toBe("A summary.");
    expect(screen.getByText("1.20 s")).toBeTruthy();
    expect(screen.getByRole("heading", { name: "Errors (1)" })).toBeTruthy();
    expect(buttons()).toEqual(["Delete"]);
    unmount();
    current = task({ state: "DLQ", result: null, actions: ["retry", "delete"] });
    page();
    await waitFor(() => expect(buttons()).toEqual(["Retry", "Delete"]));
  });

  it("shows the API's own words when an action is refused (the state changed meanwhile)", async () => {
    fakeApi((call) => {
      if (call.method === "GET" && call.path === "/api/v1/tasks/t-1")
        return { status: 200, body: task({ state: "ACTIVE", result: null, actions: ["cancel"] }) };
      if (call.method === "POST" && call.path === "/api/v1/tasks/t-1/cancel")
        return { status: 409, body: { code: "invalid_transition", message: "task t-1 is COMPLETED; cannot cancel" } };
      return undefined;
    });
    page();
    await waitFor(() => expect(buttons()).toEqual(["Cancel"]));
    await userEvent.click(screen.getByRole("button", { name: "Cancel" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("task t-1 is COMPLETED; cannot cancel");
    expect(alert.textContent).toContain("409 invalid_transition");
  });
});

describe("TaskDetailPage results by type", () => {
  const show = async (detail: TaskDetail) => {
    fakeApi((call) => (call.method === "GET" && call.path === "/api/v1/tasks/t-1" ? { status: 200, body: detail } : undefined));
    render(
      <LiveProvider>
        <TaskDetailPage taskId="t-1" />
      </LiveProvider>,
    );
    await screen.findByRole("heading", { name: "Result" });
  };
  const schema = { type: "object", properties: { name: { type: "string" }, born: { type: "integer" } }, required: ["name"] };

  it("shows a JSON result indented, and the params", async () => {
    const result = { name: "Ada Lovelace", born: 1815, works: ["Notes"] };
    await show(task({ task_type: "extract", content: "Ada Lovelace, born 1815.", params: { schema }, result }));
    expect(screen.getByTestId("result-json").tagName).toBe("PRE");
    expect(screen.getByTestId("result-json").textContent).toBe(JSON.stringify(result, null, 2));
    expect(screen.queryByTestId("summary")).toBeNull();
    const params = screen.getByTestId("params");
    expect(within(params).getByText("schema").tagName).toBe("CODE");
    expect(params.querySelector("dd pre")?.textContent).toBe(JSON.stringify(schema, null, 2));
    expect(screen.getByText("extract", { selector: ".type-badge" })).toBeTruthy();
  });

  it("shows a text result as text, and params that are plain values as they are", async () => {
    await show(task({ task_type: "translate", params: { target_language: "French" }, result: "Un texte." }));
    expect(screen.getByTestId("summary").textContent).toBe("Un texte.");
    const params = screen.getByTestId("params");
    expect(params.textContent).toBe("target_languageFrench");
    expect(params.querySelector("pre")).toBeNull();
  });

  it("shows a chat answer's content first, with why it ended, its tokens and the whole JSON", async () => {
    const result = {
      content: "Hi there!",
      finish_reason: "length",
      usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
      model: "stub/model",
    };
    await show(task({ task_type: "chat", params: { messages: [{ role: "user", content: "Say hi" }] }, result }));
    expect(screen.getByTestId("result-content").textContent).toBe("Hi there!");
    const chat = screen.getByTestId("chat-result");
    expect(within(chat).getByTestId("finish-reason").textContent).toBe("length");
    expect(chat.textContent).toContain("9 in, 3 out (12 in all)");
    expect(chat.textContent).toContain("stub/model");
    expect(chat.querySelector("details pre")?.textContent).toBe(JSON.stringify(result, null, 2));
  });

  it("shows no parameters section for a type that has none", async () => {
    await show(task({ params: null }));
    expect(screen.queryByTestId("params")).toBeNull();
  });
});

describe("TasksPage types", () => {
  const types = [{ name: "chat" }, { name: "extract" }, { name: "summarize" }, { name: "translate" }];

  it("shows each task's type, and filters by type with task_type in the request", async () => {
    const items = [task({ task_id: "t-a", task_type: "extract" }), task({ task_id: "t-b", task_type: "summarize" })];
    const calls = fakeApi((call) => {
      if (call.path === "/api/v1/task-types") return { status: 200, body: types };
      if (call.path.startsWith("/api/v1/tasks/?")) return { status: 200, body: { items, next_cursor: null } };
      return undefined;
    });
    window.history.replaceState(null, "", "/tasks?state=COMPLETED");
    render(
      <LiveProvider>
        <TasksPage />
      </LiveProvider>,
    );
    const table = await screen.findByRole("table", { name: "Tasks in COMPLETED" });
    const header = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
    expect(header.slice(0, 3)).toEqual(["Task", "Type", "State"]);
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const typeCell = (id: string) => table.querySelector(`tr[data-task-id='${id}'] td:nth-child(2)`)?.textContent;
    expect([typeCell("t-a"), typeCell("t-b")]).toEqual(["extract", "summarize"]);

    const filter = screen.getByLabelText("Type") as HTMLSelectElement;
    await waitFor(() => expect([...filter.options].map((o) => o.value)).toEqual(["", "chat", "extract", "summarize", "translate"]));
    await userEvent.selectOptions(filter, "extract");
    expect(window.location.pathname + window.location.search).toBe("/tasks?state=COMPLETED&type=extract");
    await waitFor(() => expect(calls.some((c) => c.path === "/api/v1/tasks/?limit=20&status=COMPLETED&task_type=extract")).toBe(true));
    expect(await screen.findByRole("table", { name: "Tasks in COMPLETED of type extract" })).toBeTruthy();
    // Back to every type: the request has no task_type any more.
    const before = calls.length;
    await userEvent.selectOptions(filter, "");
    await waitFor(() => expect(calls.slice(before).some((c) => c.path === "/api/v1/tasks/?limit=20&status=COMPLETED")).toBe(true));
  });

  it("shows the API's refusal of a type it does not know", async () => {
    fakeApi((call) => {
      if (call.path === "/api/v1/task-types") return { status: 200, body: types };
      if (call.path.includes("task_type=gone"))
        return { status: 422, body: { code: "validation_error", message: "query.task_type: unknown task type 'gone'" } };
      return undefined;
    });
    window.history.replaceState(null, "", "/tasks?type=gone");
    render(
      <LiveProvider>
        <TasksPage />
      </LiveProvider>,
    );
    expect((await screen.findByRole("alert")).textContent).toContain("unknown task type 'gone'");
    expect((screen.getByLabelText("Type") as HTMLSelectElement).value).toBe("gone");
  });

  it("builds the list's URL from the state, the type and the cursor", () => {
    expect(listUrl("", null)).toBe("/api/v1/tasks/?limit=20");
    expect(listUrl("DLQ", "c1", "chat")).toBe("/api/v1/tasks/?limit=20&status=DLQ&task_type=chat&cursor=c1");
  });
});

describe("DashboardPage throughput", () => {
  it("starts from the server's history, then adds the live transitions", async () => {
    const now = Date.now();
    const minute = Math.floor(now / 60_000);
    // 57 tasks completed three minutes before the page opened (as in issue 21), 1 failed a second ago.
    const minutes = Array.from({ length: 60 }, (_, i) => ({
      start: (minute - 59 + i) * 60_000,
      completed: minute - 59 + i === minute - 3 ? 57 : 0,
      failed: i === 59 ? 1 : 0,
    }));
    const second = Math.floor(now / 1000);
    const seconds = Array.from({ length: 60 }, (_, i) => ({ start: (second - 59 + i) * 1000, completed: 0, failed: i === 58 ? 1 : 0 }));
    const stream = fakeStream();
    const calls = fakeApi((call) => {
      if (call.path === "/api/v1/queues/status/stream") return stream.response;
      if (call.path === "/api/v1/queues/throughput") return { status: 200, body: { now, seconds, minutes } };
      return undefined;
    });
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    const summary = await screen.findByTestId("throughput-summary");
    expect(summary.textContent).toContain("0 completed, 0 failed · last 15 min: 0 completed, 0 failed");
    stream.send("snapshot", status);
    await waitFor(() => expect(summary.textContent).toContain("last 15 min: 57 completed, 1 failed"));
    expect(summary.textContent).toContain("Last minute: 0 completed, 1 failed");
    stream.send("transition", { task_id: "t9", from: "ACTIVE", to: "COMPLETED", at: now + 5, counters: { completed: 58 } });
    stream.send("transition", { task_id: "t8", from: "ACTIVE", to: "COMPLETED", at: now - 5, counters: { completed: 57 } });
    await waitFor(() => expect(summary.textContent).toContain("Last minute: 1 completed, 1 failed · last 15 min: 58 completed"), {
      timeout: 3000,
    });
    expect(calls.filter((c) => c.path === "/api/v1/queues/throughput")).toHaveLength(1);
  });
});

describe("DashboardPage throughput on a browser whose clock is off", () => {
  it("places the figures on the server's clock", async () => {
    const now = Date.now() + 120_000; // the server is two minutes ahead of this browser
    const second = Math.floor(now / 1000);
    const seconds = Array.from({ length: 60 }, (_, i) => ({ start: (second - 59 + i) * 1000, completed: i === 58 ? 3 : 0, failed: 0 }));
    const minute = Math.floor(now / 60_000);
    const minutes = Array.from({ length: 60 }, (_, i) => ({ start: (minute - 59 + i) * 60_000, completed: i === 59 ? 3 : 0, failed: 0 }));
    const stream = fakeStream();
    fakeApi((call) => {
      if (call.path === "/api/v1/queues/status/stream") return stream.response;
      if (call.path === "/api/v1/queues/throughput") return { status: 200, body: { now, seconds, minutes } };
      return undefined;
    });
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    const summary = await screen.findByTestId("throughput-summary");
    stream.send("snapshot", status);
    await waitFor(() => expect(summary.textContent).toContain("Last minute: 3 completed"));
  });
});

describe("DashboardPage provider and workers", () => {
  it("reads the provider's last success and the workers' figures again after tasks finish", async () => {
    let successAt: number | null = null;
    let taken = { primary: 0, retry: 0 };
    const stream = fakeStream();
    fakeApi((call) => {
      if (call.path === "/api/v1/queues/status/stream") return stream.response;
      if (call.path === "/api/v1/openrouter/status")
        return { status: 200, body: { provider: "offline", model: "extractive", last_success_at: successAt, last_model: successAt ? "extractive" : null } };
      if (call.path === "/health/workers")
        return {
          status: 200,
          body: {
            breaker: { state: "closed", fail_counter: 0, seconds_left: 0 },
            workers: [{ consumer_id: "c1", host: "h", pid: 1, taken, completed: taken.primary, failed: 0, processed: taken.primary }],
          },
        };
      return undefined;
    });
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    const provider = await screen.findByTestId("provider");
    await waitFor(() => expect(provider.textContent).toContain("Last successnone yet"));
    expect((await screen.findByTestId("taken")).textContent).toBe("0 / 0");
    stream.send("snapshot", status);
    successAt = Date.now();
    taken = { primary: 5, retry: 0 };
    for (const [i, to] of ["ACTIVE", "COMPLETED"].entries())
      stream.send("transition", { task_id: "t1", from: i ? "ACTIVE" : "PENDING", to, at: successAt });
    await waitFor(() => expect(screen.getByTestId("taken").textContent).toBe("5 / 0"), { timeout: 3000 });
    await waitFor(() => expect(provider.textContent).toMatch(/Last success(just now|[\d.]+ s ago) \(extractive\)/), { timeout: 3000 });
  });
});

describe("DlqPage", () => {
  it("requeues the selected tasks and purges only after confirmation", async () => {
    const dead = [task({ task_id: "d-1", state: "DLQ", last_error: "HTTP 500" }), task({ task_id: "d-2", state: "DLQ" })];
    const calls = fakeApi((call) => {
      if (call.path.startsWith("/api/v1/queues/dlq?")) return { status: 200, body: { items: dead, next_cursor: null } };
      if (call.path === "/api/v1/queues/dlq/requeue") return { status: 200, body: { requeued: 1, not_dead: [] } };
      if (call.method === "DELETE") return { status: 200, body: { deleted: 2 } };
      return undefined;
    });
    HTMLDialogElement.prototype.showModal ??= function (this: HTMLDialogElement) {
      this.setAttribute("open", "");
    };
    HTMLDialogElement.prototype.close ??= function (this: HTMLDialogElement) {
      this.removeAttribute("open");
    };
    render(
      <LiveProvider>
        <DlqPage />
      </LiveProvider>,
    );
    const row = (await screen.findByText("HTTP 500")).closest("tr")!;
    expect(within(row).getByText("summarize").className).toContain("type-badge");
    await userEvent.click(within(row).getByRole("checkbox"));
    await userEvent.click(screen.getByRole("button", { name: "Requeue selected (1)" }));
    await screen.findByText("Requeued 1 task(s).");
    expect(calls.find((c) => c.path === "/api/v1/queues/dlq/requeue")?.body).toEqual({ task_ids: ["d-1"] });

    await userEvent.click(screen.getByRole("button", { name: "Purge all…" }));
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    await userEvent.click(screen.getByRole("button", { name: "Purge every dead task" }));
    await waitFor(() => expect(calls.some((c) => c.method === "DELETE" && c.path === "/api/v1/queues/dlq")).toBe(true));
    await screen.findByText("Purged 2 dead task(s).");
  });
});

describe("providerRows", () => {
  it("summarizes what the provider status reports and leaves out what it does not", async () => {
    const { providerRows } = await import("./Dashboard");
    const rows = Object.fromEntries(
      providerRows(
        {
          provider: "openrouter",
          model: "m1",
          fallback_models: ["m2"],
          key_configured: true,
          account: { key_valid: false },
          paused: false,
          rate_limit: { enabled: false },
          last_error: "invalid key",
          last_error_type: "auth",
          last_error_at: 1_000,
          last_success_at: null,
        },
        61_000,
      ),
    );
    expect(rows).toEqual({
      Provider: "openrouter · m1",
      "Fallback models": "m2",
      "API key": "rejected",
      Calls: "flowing",
      "Rate limit": "off",
      "Last success": "none yet",
      "Last error": "auth: invalid key (1 min ago)",
    });
  });
});
