import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeApi, fakeStream } from "../fake-api";
import { LiveProvider } from "../LiveContext";
import type { KeyUsage, QueueStatus, TaskDetail } from "../types";
import { DashboardPage, OwnersPanel, PriorityPanel, usageRows } from "./Dashboard";
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
  // The pending work by level (primary 4 and retry 1 in all, as in `queues`) and by key.
  priorities: Array.from({ length: 10 }, (_, priority) => ({
    priority,
    primary: priority === 0 ? 1 : priority === 5 ? 3 : 0,
    retry: priority === 9 ? 1 : 0,
  })),
  top_owners: [
    { owner: "alice", backlog: 4, active: 5 },
    { owner: "", backlog: 1, active: 1 },
  ],
};

function task(overrides: Partial<TaskDetail> = {}): TaskDetail {
  return {
    task_id: "t-1", task_type: "summarize", state: "COMPLETED", content: "Some text.", result: "A summary.",
    priority: 5, provider: "offline", retry_count: 1, max_retries: 3, last_error: null, error_type: null, worker: "w1",
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

describe("DashboardPage priorities and owners", () => {
  const rows = (table: HTMLElement) =>
    within(table)
      .getAllByRole("row")
      .slice(1)
      .map((row) => [...row.querySelectorAll("td")].map((td) => td.textContent));

  it("shows the pending work of each level with any, and the keys with the most, from the status the stream sends", async () => {
    const stream = fakeStream();
    fakeApi((call) => (call.path === "/api/v1/queues/status/stream" ? stream.response : undefined));
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    stream.send("snapshot", {
      ...status,
      priorities: status.priorities!.map((level) => (level.priority === 2 ? { ...level, primary: 1200, retry: 7 } : level)),
      top_owners: [
        { owner: "alice", backlog: 2000, active: 4 },
        { owner: "bob", backlog: 30, active: 0 },
        { owner: "", backlog: 3, active: 0 },
      ],
    });
    const levels = await screen.findByRole("table", { name: "Pending by priority" });
    // Levels in order, the empty ones left out; each: primary, retry, and their sum.
    expect(rows(levels)).toEqual([
      ["0 (runs first)", "1", "0", "1"],
      ["2", (1200).toLocaleString(), "7", (1207).toLocaleString()],
      ["5 (default)", "3", "0", "3"],
      ["9 (runs last)", "0", "1", "1"],
    ]);
    expect([...levels.querySelectorAll("tbody tr")].map((tr) => tr.getAttribute("data-priority"))).toEqual(["0", "2", "5", "9"]);
    // The fullest level's bar is the whole width, the others a share of it.
    const bar = (level: number, side: string) => (levels.querySelector(`tr[data-priority='${level}'] .bar-${side}`) as HTMLElement).style.width;
    expect([bar(2, "primary"), bar(2, "retry"), bar(5, "primary")]).toEqual([`${((100 * 1200) / 1207).toFixed(1)}%`, `${((100 * 7) / 1207).toFixed(1)}%`, `${((100 * 3) / 1207).toFixed(1)}%`]);
    expect(screen.getByText(/The empty levels are not listed/)).toBeTruthy();

    const owners = screen.getByRole("table", { name: "Top owners by backlog" });
    expect(rows(owners)).toEqual([
      ["alice", (2000).toLocaleString(), "4"],
      ["bob", "30", "0"],
      ["(no key)", "3", "0"],
    ]);

    // A level's link opens the pending tasks of that level.
    await userEvent.click(within(levels).getByRole("link", { name: "5 (default)" }));
    expect(window.location.pathname + window.location.search).toBe("/tasks?state=PENDING&priority=5");
  });

  it("follows the next status: a level emptied leaves the table", async () => {
    const stream = fakeStream();
    fakeApi((call) => (call.path === "/api/v1/queues/status/stream" ? stream.response : undefined));
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    stream.send("snapshot", status);
    const levels = await screen.findByRole("table", { name: "Pending by priority" });
    await waitFor(() => expect(rows(levels).map((r) => r[0])).toEqual(["0 (runs first)", "5 (default)", "9 (runs last)"]));
    stream.send("snapshot", { ...status, priorities: status.priorities!.map((l) => (l.priority === 0 ? { ...l, primary: 0 } : l)) });
    await waitFor(() => expect(rows(levels).map((r) => r[0])).toEqual(["5 (default)", "9 (runs last)"]));
  });

  it("says so when nothing is pending, and when the API does not report levels or owners", () => {
    const idle = { ...status, priorities: status.priorities!.map((l) => ({ ...l, primary: 0, retry: 0 })), top_owners: [] };
    const { unmount } = render(
      <>
        <PriorityPanel status={idle} />
        <OwnersPanel status={idle} />
      </>,
    );
    expect(screen.getByTestId("priorities-empty").textContent).toBe("Nothing pending at any priority.");
    expect(screen.getByTestId("owners-empty").textContent).toBe("No key has pending work.");
    expect(screen.queryByRole("table")).toBeNull();
    unmount();

    const { priorities: _levels, top_owners: _owners, ...older } = status;
    render(
      <>
        <PriorityPanel status={older} />
        <OwnersPanel status={older} />
      </>,
    );
    expect(screen.getByText("This API does not report pending work by priority.")).toBeTruthy();
    expect(screen.getByText("This API does not report pending work by owner.")).toBeTruthy();
  });
});

describe("DashboardPage usage", () => {
  const usage: KeyUsage = {
    key: "alice",
    day: "2026-12-03",
    limits: { concurrency: 4, daily_tokens: 200000 },
    active: 2,
    backlog: 130,
    tokens_today: 1234,
    waiting: null,
    resumes_at: null,
  };

  it("shows the key's limits and use from GET /api/v1/usage", async () => {
    const calls = fakeApi((call) => (call.path === "/api/v1/usage" ? { status: 200, body: usage } : undefined));
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    const panel = await screen.findByTestId("usage");
    const facts = Object.fromEntries([...panel.querySelectorAll("div")].map((d) => [d.querySelector("dt")?.textContent, d.querySelector("dd")?.textContent]));
    expect(facts).toEqual({
      Key: "alice",
      "Running now": "2 of 4",
      Pending: "130",
      "Tokens today (2026-12-03)": `${(1234).toLocaleString()} of ${(200000).toLocaleString()}`,
      "Held back": "no",
    });
    expect(calls.some((c) => c.method === "GET" && c.path === "/api/v1/usage")).toBe(true);
  });

  it("says why the key's tasks wait, and no limit where there is none", () => {
    const rows = (u: KeyUsage) => Object.fromEntries(usageRows(u));
    const open = rows({ ...usage, key: "", limits: { concurrency: null, daily_tokens: null } });
    expect([open.Key, open["Running now"], open["Tokens today (2026-12-03)"]]).toEqual(["(no key)", "2 (no limit)", `${(1234).toLocaleString()} (no limit)`]);
    expect(rows({ ...usage, waiting: "concurrency" })["Held back"]).toBe("yes: as many running as the key may run at once");
    const resumes = Date.UTC(2026, 11, 4);
    expect(rows({ ...usage, waiting: "daily_tokens", resumes_at: resumes })["Held back"]).toBe(
      `yes: today's tokens are used up, until ${new Date(resumes).toLocaleString()}`,
    );
  });

  it("says so when the API does not report usage", async () => {
    fakeApi(() => undefined); // every route 404
    render(
      <LiveProvider>
        <DashboardPage />
      </LiveProvider>,
    );
    expect(await screen.findByText("This API does not report usage.")).toBeTruthy();
    expect(screen.queryByTestId("usage")).toBeNull();
  });
});

describe("TasksPage priorities", () => {
  it("shows each task's priority, and filters by priority with priority= in the request", async () => {
    const items = [task({ task_id: "t-a", priority: 0 }), task({ task_id: "t-b", priority: 9 })];
    const calls = fakeApi((call) => {
      if (call.path === "/api/v1/task-types") return { status: 200, body: [{ name: "summarize" }] };
      if (call.path.startsWith("/api/v1/tasks/?")) return { status: 200, body: { items, next_cursor: null } };
      return undefined;
    });
    window.history.replaceState(null, "", "/tasks?state=PENDING&type=summarize");
    render(
      <LiveProvider>
        <TasksPage />
      </LiveProvider>,
    );
    const table = await screen.findByRole("table", { name: "Tasks in PENDING of type summarize" });
    const header = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
    expect(header.slice(0, 4)).toEqual(["Task", "Type", "State", "Priority"]);
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const priorityCell = (id: string) => table.querySelector(`tr[data-task-id='${id}'] td:nth-child(4)`)?.textContent;
    expect([priorityCell("t-a"), priorityCell("t-b")]).toEqual(["0", "9"]);

    const filter = screen.getByLabelText("Priority") as HTMLSelectElement;
    expect([...filter.options].map((o) => o.value)).toEqual(["", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    expect(filter.options[1].textContent).toBe("0 (runs first)");
    await userEvent.selectOptions(filter, "3");
    expect(window.location.pathname + window.location.search).toBe("/tasks?state=PENDING&type=summarize&priority=3");
    await waitFor(() =>
      expect(calls.some((c) => c.path === "/api/v1/tasks/?limit=20&status=PENDING&task_type=summarize&priority=3")).toBe(true),
    );
    expect(await screen.findByRole("table", { name: "Tasks in PENDING of type summarize at priority 3" })).toBeTruthy();
    // Level 0 is a filter too (not "any").
    await userEvent.selectOptions(filter, "0");
    await waitFor(() => expect(calls.some((c) => c.path === "/api/v1/tasks/?limit=20&status=PENDING&task_type=summarize&priority=0")).toBe(true));
    // Back to every priority: the request has no priority any more; the other filters stay.
    const before = calls.length;
    await userEvent.selectOptions(filter, "");
    await waitFor(() => expect(calls.slice(before).some((c) => c.path === "/api/v1/tasks/?limit=20&status=PENDING&task_type=summarize")).toBe(true));
    expect(window.location.search).toBe("?state=PENDING&type=summarize");
  });

  it("keeps the priority when another filter changes, and shows the API's refusal of a level out of range", async () => {
    const calls = fakeApi((call) => {
      if (call.path.includes("priority=12"))
        return { status: 422, body: { code: "validation_error", message: "query.priority: Input should be less than or equal to 9" } };
      if (call.path.startsWith("/api/v1/tasks/?")) return { status: 200, body: { items: [], next_cursor: null } };
      return undefined;
    });
    window.history.replaceState(null, "", "/tasks?priority=12");
    render(
      <LiveProvider>
        <TasksPage />
      </LiveProvider>,
    );
    expect((await screen.findByRole("alert")).textContent).toContain("less than or equal to 9");
    expect((screen.getByLabelText("Priority") as HTMLSelectElement).value).toBe("12");
    await userEvent.selectOptions(screen.getByLabelText("Priority"), "7");
    await userEvent.selectOptions(screen.getByLabelText("State"), "DLQ");
    expect(window.location.search).toBe("?state=DLQ&priority=7");
    await waitFor(() => expect(calls.some((c) => c.path === "/api/v1/tasks/?limit=20&status=DLQ&priority=7")).toBe(true));
  });

  it("builds the list's URL with the priority", () => {
    expect(listUrl("PENDING", null, "", "0")).toBe("/api/v1/tasks/?limit=20&status=PENDING&priority=0");
    expect(listUrl("DLQ", "c1", "chat", "9")).toBe("/api/v1/tasks/?limit=20&status=DLQ&task_type=chat&priority=9&cursor=c1");
  });
});

describe("TaskDetailPage priority", () => {
  it("shows the task's priority", async () => {
    fakeApi((call) => (call.path === "/api/v1/tasks/t-1" ? { status: 200, body: task({ priority: 0 }) } : undefined));
    render(
      <LiveProvider>
        <TaskDetailPage taskId="t-1" />
      </LiveProvider>,
    );
    expect((await screen.findByTestId("task-priority")).textContent).toBe("0 (runs first)");
  });
});
