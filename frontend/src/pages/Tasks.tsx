// The task list: filter by state, by type and by priority, find one by id, page through newest first.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { ApiError, getJson } from "../api";
import { ErrorNote, StateBadge, TypeBadge } from "../components";
import { ago, priorityLabel, shortId } from "../format";
import { useReloadOnEvents } from "../LiveContext";
import { Link, navigate, useRoute } from "../router";
import { useTaskTypes } from "../task-types";
import { PRIORITIES, STATES, type Task, type TaskPage } from "../types";

export const PAGE_SIZE = 20;

/** The API's page of tasks in `state` (any when "") of `taskType` (any when "") at `priority`
 * (0–9; any when ""), from `cursor`. */
export function listUrl(state: string, cursor: string | null, taskType = "", priority = ""): string {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state) params.set("status", state);
  if (taskType) params.set("task_type", taskType);
  if (priority) params.set("priority", priority);
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/tasks/?${params}`;
}

function SearchById() {
  const [id, setId] = useState("");
  const [error, setError] = useState<unknown>(null);
  const search = async (event: FormEvent) => {
    event.preventDefault();
    const wanted = id.trim();
    if (!wanted) return;
    try {
      await getJson<Task>(`/api/v1/tasks/${encodeURIComponent(wanted)}`);
      navigate(`/tasks/${encodeURIComponent(wanted)}`);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 404 ? new ApiError(404, "task_not_found", `No task ${wanted}.`) : err);
    }
  };
  return (
    <form className="inline-form" onSubmit={search} role="search">
      <label htmlFor="task-search">Task id</label>
      <input id="task-search" value={id} onChange={(e) => setId(e.target.value)} placeholder="6f1c2d3e-…" spellCheck={false} />
      <button type="submit">Open</button>
      <ErrorNote error={error} />
    </form>
  );
}

function useTaskPage(state: string, taskType: string, priority: string, cursor: string | null) {
  const [page, setPage] = useState<TaskPage | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useRef(async () => {});
  load.current = async () => {
    try {
      setPage(await getJson<TaskPage>(listUrl(state, cursor, taskType, priority)));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    void load.current();
  }, [state, taskType, priority, cursor]);
  // The first page follows the live stream (re-read at most every 2 s); later pages hold still.
  useReloadOnEvents(() => !cursor, () => void load.current(), 2000);
  return { page, error, reload: () => void load.current() };
}

export function TasksPage() {
  const { query } = useRoute();
  const state = query.get("state") ?? "";
  const taskType = query.get("type") ?? "";
  const priority = query.get("priority") ?? "";
  const cursor = query.get("cursor");
  const [previous, setPrevious] = useState<(string | null)[]>([]);
  const { page, error, reload } = useTaskPage(state, taskType, priority, cursor);
  const { types } = useTaskTypes();

  const go = (nextState: string, nextType: string, nextPriority: string, nextCursor: string | null) => {
    const params = new URLSearchParams();
    if (nextState) params.set("state", nextState);
    if (nextType) params.set("type", nextType);
    if (nextPriority) params.set("priority", nextPriority);
    if (nextCursor) params.set("cursor", nextCursor);
    navigate(`/tasks${params.toString() ? `?${params}` : ""}`);
  };
  const filter = (nextState: string, nextType: string, nextPriority: string) => {
    setPrevious([]);
    go(nextState, nextType, nextPriority, null);
  };
  const next = () => {
    setPrevious((stack) => [...stack, cursor]);
    go(state, taskType, priority, page?.next_cursor ?? null);
  };
  const back = () => {
    const stack = [...previous];
    const before = stack.pop() ?? null;
    setPrevious(stack);
    go(state, taskType, priority, before);
  };
  // The names the API offers, and the one in the address even before they arrive (or if gone).
  const typeNames = [...new Set([...(types ?? []).map((t) => t.name), ...(taskType ? [taskType] : [])])];
  // The levels 0–9, and the one in the address even if it is not one of them (the API says why).
  const levels = [...new Set([...PRIORITIES.map(String), ...(priority ? [priority] : [])])];
  const shownAs = [state && `in ${state}`, taskType && `of type ${taskType}`, priority && `at priority ${priority}`].filter(Boolean).join(" ");

  return (
    <>
      <h1>Tasks</h1>
      <div className="toolbar">
        <div className="inline-form">
          <label htmlFor="state-filter">State</label>
          <select id="state-filter" value={state} onChange={(e) => filter(e.target.value, taskType, priority)}>
            <option value="">All states</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
          <label htmlFor="type-filter">Type</label>
          <select id="type-filter" value={taskType} onChange={(e) => filter(state, e.target.value, priority)}>
            <option value="">All types</option>
            {typeNames.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          <label htmlFor="priority-filter">Priority</label>
          <select id="priority-filter" value={priority} onChange={(e) => filter(state, taskType, e.target.value)}>
            <option value="">All priorities</option>
            {levels.map((level) => (
              <option key={level} value={level}>
                {/^\d$/.test(level) ? priorityLabel(Number(level)) : level}
              </option>
            ))}
          </select>
          <button type="button" onClick={reload}>
            Refresh
          </button>
        </div>
        <SearchById />
      </div>
      <ErrorNote error={error} />
      <div className="table-scroll">
        <table className="tasks" aria-label={`Tasks${shownAs ? ` ${shownAs}` : ""}`}>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Type</th>
              <th scope="col">State</th>
              <th scope="col">Priority</th>
              <th scope="col">Progress</th>
              <th scope="col">Retries</th>
              <th scope="col">Updated</th>
              <th scope="col">Last error</th>
            </tr>
          </thead>
          <tbody>
            {page?.items.map((task) => (
              <tr key={task.task_id} data-task-id={task.task_id}>
                <td>
                  <Link href={`/tasks/${task.task_id}`} title={task.task_id}>
                    <code>{shortId(task.task_id)}</code>
                  </Link>
                </td>
                <td>
                  <TypeBadge type={task.task_type} />
                </td>
                <td>
                  <StateBadge state={task.state} />
                </td>
                <td data-testid="task-priority">{task.priority ?? "—"}</td>
                <td>{task.progress} %</td>
                <td>
                  {task.retry_count} / {task.max_retries}
                </td>
                <td>{ago(task.updated_at)}</td>
                <td className="clip">{task.last_error ?? ""}</td>
              </tr>
            ))}
            {page && page.items.length === 0 && (
              <tr>
                <td colSpan={8} className="muted">
                  No tasks{shownAs ? ` ${shownAs}` : ""}.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav className="pager" aria-label="Pages">
        <button type="button" onClick={back} disabled={!cursor}>
          ← Newer
        </button>
        <button type="button" onClick={next} disabled={!page?.next_cursor}>
          Older →
        </button>
      </nav>
    </>
  );
}
