// Submit a text (typed, pasted or dropped as a .txt file) and watch the task move through its
// states live, then read its summary.
import { useEffect, useState, type DragEvent, type FormEvent } from "react";
import { getJson, sendJson } from "../api";
import { ErrorNote, StateBadge } from "../components";
import { time } from "../format";
import { useTaskEvents } from "../LiveContext";
import { Link } from "../router";
import { TERMINAL, type TaskDetail } from "../types";
import { TaskProgress } from "./TaskDetail";

interface Accepted {
  task_id: string;
  state: string;
  created_at: number;
}

const POLL_MS = 1500;

/** Watch one task: re-read it on each of its stream events, and poll too while it runs (the stream may be down). */
function useWatchedTask(taskId: string | null) {
  const [task, setTask] = useState<TaskDetail | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = async () => {
    if (!taskId) return;
    try {
      setTask(await getJson<TaskDetail>(`/api/v1/tasks/${taskId}`));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useTaskEvents(taskId ?? "", () => void load());
  const finished = task !== null && TERMINAL.has(task.state);
  useEffect(() => {
    setTask(null);
    if (!taskId) return;
    void load();
  }, [taskId]);
  useEffect(() => {
    if (!taskId || finished) return;
    const timer = setInterval(() => void load(), POLL_MS);
    return () => clearInterval(timer);
  }, [taskId, finished]);
  return { task, error };
}

export function readDroppedText(event: DragEvent<HTMLElement>): Promise<string> | null {
  const file = event.dataTransfer.files[0];
  if (!file) return null;
  if (!(file.type.startsWith("text/") || file.name.endsWith(".txt"))) return Promise.reject(new Error("Drop a .txt file"));
  return file.text();
}

export function SubmitPage() {
  const [content, setContent] = useState("");
  const [taskId, setTaskId] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [dragging, setDragging] = useState(false);
  const { task, error: watchError } = useWatchedTask(taskId);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const accepted = await sendJson<Accepted>("POST", "/api/v1/tasks/summarize/", { content });
      setTaskId(accepted?.task_id ?? null);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const takeText = (text: Promise<string> | null) => {
    text?.then(setContent).catch(setError);
  };
  const drop = (event: DragEvent<HTMLElement>) => {
    event.preventDefault();
    setDragging(false);
    takeText(readDroppedText(event));
  };

  return (
    <>
      <h1>Submit a text</h1>
      <form onSubmit={submit} className="submit-form">
        <div
          className={`dropzone${dragging ? " dragging" : ""}`}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={drop}
        >
          <label htmlFor="content">Text to summarize (paste it, or drop a .txt file here)</label>
          <textarea id="content" rows={10} value={content} onChange={(e) => setContent(e.target.value)} required />
          <div className="file-row">
            <label htmlFor="file" className="muted">
              …or choose a file:
            </label>
            <input id="file" type="file" accept=".txt,text/plain" onChange={(e) => takeText(e.target.files?.[0]?.text() ?? null)} />
            <span className="muted small">{content.length.toLocaleString()} characters</span>
          </div>
        </div>
        <button type="submit" disabled={busy || !content.trim()}>
          Submit
        </button>
      </form>
      <ErrorNote error={error} />
      {taskId && (
        <section aria-labelledby="watch-title" className="panel" aria-live="polite">
          <h2 id="watch-title">
            Task <Link href={`/tasks/${taskId}`}>{taskId}</Link>
          </h2>
          <ErrorNote error={watchError} />
          {task && (
            <>
              <p className="state-line" data-testid="watch-state">
                State: <StateBadge state={task.state} />
              </p>
              <TaskProgress task={task} />
              <ol className="timeline" aria-label="States so far">
                {task.history.map((entry, i) => (
                  <li key={`${entry.at}-${i}`}>
                    <StateBadge state={entry.to || "DELETED"} /> <span className="muted">{time(entry.at)}</span>
                    {entry.error && <span className="error-text"> — {entry.error}</span>}
                  </li>
                ))}
              </ol>
              {task.result && (
                <>
                  <h3>Summary</h3>
                  <p className="result" data-testid="summary">
                    {task.result}
                  </p>
                </>
              )}
              {task.last_error && task.state !== "COMPLETED" && <p className="error-text">Last error: {task.last_error}</p>}
            </>
          )}
        </section>
      )}
    </>
  );
}
