// The dead-letter queue: each dead task with the error that killed it; re-drive some or all,
// or purge them (after a confirmation).
import { useState } from "react";
import { getJson, sendJson } from "../api";
import { ConfirmDialog, ErrorNote, Notice, TypeBadge, usePoll } from "../components";
import { ago, shortId } from "../format";
import { useReloadOnEvents } from "../LiveContext";
import { Link } from "../router";
import type { TaskPage } from "../types";

const DLQ_PAGE = 100;

interface Requeued {
  requeued: number;
  not_dead: string[];
}

export function DlqPage() {
  const { data, error, reload } = usePoll(() => getJson<TaskPage>(`/api/v1/queues/dlq?limit=${DLQ_PAGE}`), 5000);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [actionError, setActionError] = useState<unknown>(null);
  const [message, setMessage] = useState("");
  const [confirming, setConfirming] = useState(false);
  useReloadOnEvents((e) => e.event === "transition" && (e.to === "DLQ" || e.from === "DLQ"), () => void reload());

  const items = data?.items ?? [];
  const allSelected = items.length > 0 && items.every((t) => selected.has(t.task_id));
  const toggle = (id: string) =>
    setSelected((current) => {
      const next = new Set(current);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });
  const toggleAll = () => setSelected(allSelected ? new Set() : new Set(items.map((t) => t.task_id)));

  const run = async (action: () => Promise<string>) => {
    setActionError(null);
    setMessage("");
    try {
      setMessage(await action());
      setSelected(new Set());
      await reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const requeue = (ids: string[] | null) =>
    run(async () => {
      const result = await sendJson<Requeued>("POST", "/api/v1/queues/dlq/requeue", ids ? { task_ids: ids } : undefined);
      const skipped = result?.not_dead.length ? ` (${result.not_dead.length} were no longer dead)` : "";
      return `Requeued ${result?.requeued ?? 0} task(s)${skipped}.`;
    });
  const purge = () =>
    run(async () => {
      setConfirming(false);
      const result = await sendJson<{ deleted: number }>("DELETE", "/api/v1/queues/dlq");
      return `Purged ${result?.deleted ?? 0} dead task(s).`;
    });

  return (
    <>
      <h1>Dead-letter queue</h1>
      <div className="toolbar">
        <button type="button" onClick={() => requeue([...selected])} disabled={selected.size === 0}>
          Requeue selected ({selected.size})
        </button>
        <button type="button" onClick={() => requeue(null)} disabled={items.length === 0}>
          Requeue all
        </button>
        <button type="button" className="danger" onClick={() => setConfirming(true)} disabled={items.length === 0}>
          Purge all…
        </button>
      </div>
      <ErrorNote error={actionError ?? error} />
      {message && <Notice>{message}</Notice>}
      <div className="table-scroll">
        <table aria-label="Dead tasks">
          <thead>
            <tr>
              <th scope="col">
                <input type="checkbox" aria-label="Select all" checked={allSelected} onChange={toggleAll} />
              </th>
              <th scope="col">Task</th>
              <th scope="col">Type</th>
              <th scope="col">Died</th>
              <th scope="col">Retries</th>
              <th scope="col">Last error</th>
            </tr>
          </thead>
          <tbody>
            {items.map((task) => (
              <tr key={task.task_id} data-task-id={task.task_id}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select ${task.task_id}`}
                    checked={selected.has(task.task_id)}
                    onChange={() => toggle(task.task_id)}
                  />
                </td>
                <td>
                  <Link href={`/tasks/${task.task_id}`} title={task.task_id}>
                    <code>{shortId(task.task_id)}</code>
                  </Link>
                </td>
                <td>
                  <TypeBadge type={task.task_type} />
                </td>
                <td>{ago(task.finished_at ?? task.updated_at)}</td>
                <td>
                  {task.retry_count} / {task.max_retries}
                </td>
                <td className="clip">
                  {task.error_type && <strong>{task.error_type}: </strong>}
                  {task.last_error}
                </td>
              </tr>
            ))}
            {data && items.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  The DLQ is empty.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {data?.next_cursor && <p className="muted">Showing the newest {DLQ_PAGE}; requeue or purge to see older ones.</p>}
      <ConfirmDialog
        open={confirming}
        title="Purge the DLQ?"
        confirm="Purge every dead task"
        onConfirm={() => void purge()}
        onCancel={() => setConfirming(false)}
      >
        <p>Every dead task is deleted with its history. This cannot be undone.</p>
      </ConfirmDialog>
    </>
  );
}
