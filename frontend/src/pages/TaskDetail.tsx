// One task: its result (text, or JSON shown indented), its input (content and params), progress,
// timings, attempts, history and errors, and the actions the API allows (each refusal shown in
// the API's words).
import { useState } from "react";
import { ApiError, getJson, sendJson } from "../api";
import { ErrorNote, FactList, Notice, StateBadge, TypeBadge, usePoll } from "../components";
import { duration, priorityLabel, time } from "../format";
import { useReloadOnEvents } from "../LiveContext";
import { Link, navigate } from "../router";
import { pretty } from "../schema-form";
import type { JsonValue, Task, TaskAction, TaskDetail, TaskResult } from "../types";

function Facts({ task }: { task: TaskDetail }) {
  const rows: [string, string][] = [
    ["Type", task.task_type],
    ["Attempts", String(task.attempts)],
    ["Retries", `${task.retry_count} of ${task.max_retries}`],
    ["Worker", task.worker ?? "—"],
    ["Provider", [task.provider, task.model].filter(Boolean).join(" · ") || "—"],
    ["Tokens", task.usage ? `${task.usage.prompt_tokens} in, ${task.usage.completion_tokens} out` : "—"],
    ["Created", time(task.created_at)],
    ["Started", time(task.started_at)],
    ["Finished", time(task.finished_at)],
    ["Due (retry)", time(task.due_at)],
    ["Queued for", duration(task.timings.queued_ms)],
    ["Ran for", duration(task.timings.run_ms)],
    ["Total", duration(task.timings.total_ms)],
  ];
  return <FactList rows={rows} />;
}

export function TaskProgress({ task }: { task: Pick<Task, "progress" | "current_step" | "state"> }) {
  return (
    <div className="progress">
      <label htmlFor="task-progress">
        Progress {task.progress} %{task.current_step && task.state === "ACTIVE" ? ` — ${task.current_step}` : ""}
      </label>
      <progress id="task-progress" max={100} value={task.progress} />
    </div>
  );
}

/** A chat-completions answer as the chat type stores it: {content, finish_reason, usage, model}. */
interface ChatAnswer {
  content: string | null;
  finish_reason?: string | null;
  usage?: Record<string, number> | null;
  model?: string | null;
}

function isChatAnswer(result: TaskResult): result is TaskResult & ChatAnswer {
  if (typeof result !== "object" || Array.isArray(result)) return false;
  return "content" in result && "finish_reason" in result && (typeof result.content === "string" || result.content === null);
}

function tokens(usage: Record<string, number> | null | undefined): string {
  if (!usage) return "—";
  const { prompt_tokens: given, completion_tokens: answered, total_tokens: total } = usage;
  if (given === undefined || answered === undefined) return JSON.stringify(usage);
  return `${given} in, ${answered} out${total !== undefined ? ` (${total} in all)` : ""}`;
}

function ChatResult({ answer }: { answer: ChatAnswer }) {
  return (
    <div data-testid="chat-result">
      <p className="result" data-testid="result-content">
        {answer.content ?? <span className="muted">(no content)</span>}
      </p>
      <dl className="facts result-facts">
        <div>
          <dt>Finish reason</dt>
          <dd data-testid="finish-reason">{answer.finish_reason ?? "—"}</dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd>{tokens(answer.usage)}</dd>
        </div>
        <div>
          <dt>Model</dt>
          <dd>{answer.model || "—"}</dd>
        </div>
      </dl>
      <details>
        <summary>The whole answer (JSON)</summary>
        <pre className="json">{pretty(answer)}</pre>
      </details>
    </div>
  );
}

/** A completed task's result: text as it came; JSON indented; a chat answer's content first, with
 * why it ended and what it cost. */
export function TaskResultView({ result }: { result: TaskResult }) {
  if (typeof result === "string")
    return (
      <p className="result" data-testid="summary">
        {result}
      </p>
    );
  if (isChatAnswer(result)) return <ChatResult answer={result} />;
  return (
    <pre className="json" data-testid="result-json">
      {pretty(result)}
    </pre>
  );
}

function paramValue(value: JsonValue) {
  if (value === null || typeof value !== "object") return <span>{String(value)}</span>;
  return <pre className="json">{pretty(value)}</pre>;
}

/** The type's input fields other than the content, as submitted. */
export function TaskParams({ params }: { params: Record<string, JsonValue> }) {
  return (
    <dl className="params" data-testid="params">
      {Object.entries(params).map(([name, value]) => (
        <div key={name}>
          <dt>
            <code>{name}</code>
          </dt>
          <dd>{paramValue(value)}</dd>
        </div>
      ))}
    </dl>
  );
}

export function History({ task }: { task: TaskDetail }) {
  return (
    <div className="table-scroll">
      <table aria-label="State history">
        <thead>
          <tr>
            <th scope="col">At</th>
            <th scope="col">From</th>
            <th scope="col">To</th>
            <th scope="col">Worker</th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {task.history.map((entry, i) => (
            <tr key={`${entry.at}-${i}`}>
              <td>{time(entry.at)}</td>
              <td>{entry.from || "(created)"}</td>
              <td>{entry.to}</td>
              <td className="clip">{entry.worker ?? ""}</td>
              <td className="clip">{entry.error ? `${entry.error_type ?? ""}: ${entry.error}` : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The buttons the task's state allows, as the API lists them in `actions` (its own table, so the
 * page never offers what the API would refuse); every button when an older API does not say. */
function Actions({ task, onDone }: { task: TaskDetail; onDone: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState("");
  const act = async (label: string, method: string, path: string, after?: () => void) => {
    setError(null);
    setDone("");
    try {
      await sendJson<Task>(method, path);
      setDone(label);
      if (after) after();
      else onDone();
    } catch (err) {
      setError(err);
    }
  };
  const base = `/api/v1/tasks/${encodeURIComponent(task.task_id)}`;
  const allows = (action: TaskAction) => task.actions === undefined || task.actions.includes(action);
  return (
    <div className="actions-row" data-testid="task-actions">
      {allows("retry") && (
        <button type="button" onClick={() => act("Retried", "POST", `${base}/retry`)}>
          Retry
        </button>
      )}
      {allows("cancel") && (
        <button type="button" onClick={() => act("Cancelled", "POST", `${base}/cancel`)}>
          Cancel
        </button>
      )}
      {allows("delete") && (
        <button type="button" className="danger" onClick={() => act("Deleted", "DELETE", base, () => navigate("/tasks"))}>
          Delete
        </button>
      )}
      {task.actions?.length === 0 && <span className="muted">No action while {task.state}.</span>}
      <ErrorNote error={error} />
      {done && <Notice>{done}.</Notice>}
    </div>
  );
}

export function TaskDetailPage({ taskId }: { taskId: string }) {
  const { data: task, error, reload } = usePoll(
    () => getJson<TaskDetail>(`/api/v1/tasks/${encodeURIComponent(taskId)}`),
    // Slow polling as well, for when the stream is down.
    5000,
    [taskId],
  );
  useReloadOnEvents((e) => e.task_id === taskId, () => void reload(), 300);
  const gone = error instanceof ApiError && error.status === 404;
  return (
    <>
      <p>
        <Link href="/tasks">← Tasks</Link>
      </p>
      <h1>
        Task <code className="task-id">{taskId}</code>
      </h1>
      {gone ? <p role="alert">No task with this id (it may have been deleted or expired).</p> : <ErrorNote error={error} />}
      {task && (
        <>
          <p className="state-line">
            State: <StateBadge state={task.state} /> <span className="muted">Type:</span> <TypeBadge type={task.task_type} />
            {task.priority !== undefined && (
              <>
                {" "}
                <span className="muted">Priority:</span> <span data-testid="task-priority">{priorityLabel(task.priority)}</span>
              </>
            )}
          </p>
          <Actions task={task} onDone={() => void reload()} />
          <TaskProgress task={task} />
          {task.result !== null && task.result !== "" && (
            <section aria-labelledby="result-title" className="panel">
              <h2 id="result-title">Result</h2>
              <TaskResultView result={task.result} />
            </section>
          )}
          {task.last_error && (
            <section aria-labelledby="error-title" className="panel">
              <h2 id="error-title">Last error</h2>
              <p className="error-text">
                <strong>{task.error_type}</strong>: {task.last_error}
              </p>
            </section>
          )}
          <section aria-labelledby="facts-title" className="panel">
            <h2 id="facts-title">Timings and attempts</h2>
            <Facts task={task} />
          </section>
          <section aria-labelledby="content-title" className="panel">
            <h2 id="content-title">Content</h2>
            <pre className="content">{task.content}</pre>
            {task.params && Object.keys(task.params).length > 0 && (
              <>
                <h3 id="params-title">Parameters</h3>
                <TaskParams params={task.params} />
              </>
            )}
          </section>
          <section aria-labelledby="history-title" className="panel">
            <h2 id="history-title">History</h2>
            <History task={task} />
            {task.errors.length > 0 && (
              <>
                <h3>Errors ({task.errors.length})</h3>
                <ol className="errors">
                  {task.errors.map((e, i) => (
                    <li key={`${e.at}-${i}`}>
                      {time(e.at)} — <strong>{e.error_type}</strong>: {e.error}
                    </li>
                  ))}
                </ol>
              </>
            )}
          </section>
        </>
      )}
    </>
  );
}
