// Submit a task of any type the API offers (GET /api/v1/task-types): a form built from the type's
// input schema (a text, typed, pasted or dropped as a .txt file, for the types that take one) and
// the task's priority (every type takes one, outside its schema), then watch the task move through
// its states live, and read its result.
import { useEffect, useState, type FormEvent } from "react";
import { ApiError, getJson, sendJson } from "../api";
import { ErrorNote, StateBadge } from "../components";
import { priorityLabel, time } from "../format";
import { useTaskEvents } from "../LiveContext";
import { Link, navigate, useRoute } from "../router";
import { buildBody, fieldsOf, initialValues, serverFieldErrors, type FieldSpec, type FieldValue, type FormValues } from "../schema-form";
import { SchemaFields } from "../SchemaFields";
import { unavailableDetail, unavailableReason, useTaskTypes } from "../task-types";
import { DEFAULT_PRIORITY, PRIORITIES, TERMINAL, type TaskAccepted, type TaskDetail, type TaskTypeInfo } from "../types";
import { TaskProgress, TaskResultView } from "./TaskDetail";

const POLL_MS = 1500;
/** The body's field the priority goes in (not in any type's input schema), and the key of its problems. */
const PRIORITY = "priority";
/** What the page offers first when it can: what it did before it knew other types. */
const FIRST_CHOICE = "summarize";

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

/** The type the page shows: the one the address names, else summarize, else the first one that can run. */
export function chooseType(types: TaskTypeInfo[], wanted: string | null): TaskTypeInfo | null {
  return (
    types.find((t) => t.name === wanted) ??
    types.find((t) => t.name === FIRST_CHOICE && t.available) ??
    types.find((t) => t.available) ??
    types[0] ??
    null
  );
}

function TypeChoice({ types, chosen, onChoose }: { types: TaskTypeInfo[]; chosen: string; onChoose: (name: string) => void }) {
  return (
    <fieldset className="type-choice">
      <legend>Task type</legend>
      {types.map((type) => {
        const reason = unavailableReason(type);
        const id = `type-${type.name}`;
        return (
          <div key={type.name} className={`type-option${type.available ? "" : " unavailable"}`} data-type={type.name}>
            <input
              type="radio"
              id={id}
              name="task-type"
              value={type.name}
              checked={chosen === type.name}
              disabled={!type.available}
              onChange={() => onChoose(type.name)}
              aria-describedby={`${id}-about${reason ? ` ${id}-reason` : ""}`}
            />
            <div>
              <label htmlFor={id}>{type.name}</label>{" "}
              <span id={`${id}-about`} className="muted small">
                {type.description}
              </span>
              {reason && (
                <p id={`${id}-reason`} className="reason small" data-testid={`reason-${type.name}`}>
                  {reason}
                </p>
              )}
            </div>
          </div>
        );
      })}
    </fieldset>
  );
}

/** The task's priority, 0–9 (every type's body takes it), with the server's refusal beside it. */
function PriorityField({ value, onChange, problems }: { value: number; onChange: (value: number) => void; problems: string[] }) {
  const problem = problems.length ? "task-priority-problem" : undefined;
  return (
    <div className="field" data-field={PRIORITY}>
      <label htmlFor="task-priority">Priority</label>
      <span id="task-priority-hint" className="muted small">
        0 runs first, 9 last; 5 is the default.
      </span>
      <select
        id="task-priority"
        value={String(value)}
        onChange={(e) => onChange(Number(e.target.value))}
        aria-describedby={["task-priority-hint", problem].filter(Boolean).join(" ")}
        aria-invalid={problem ? true : undefined}
      >
        {PRIORITIES.map((level) => (
          <option key={level} value={String(level)}>
            {priorityLabel(level)}
          </option>
        ))}
      </select>
      {problem && (
        <ul id={problem} className="field-problems" data-testid="problem-priority">
          {problems.map((text, i) => (
            <li key={i}>{text}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** The form of each type keeps its values while another type is shown; a text typed for one type
 * is offered to the next one that takes a text and has none yet. */
function useFormValues(type: TaskTypeInfo | null, fields: FieldSpec[]) {
  const [byType, setByType] = useState<Record<string, FormValues>>({});
  const [lastContent, setLastContent] = useState("");
  const name = type?.name ?? "";
  const carried = lastContent && fields.some((f) => f.name === "content") ? { content: lastContent } : {};
  const values: FormValues = byType[name] ?? { ...initialValues(fields), ...carried };
  const change = (field: string, value: FieldValue) => {
    if (field === "content") setLastContent(String(value));
    setByType((all) => ({ ...all, [name]: { ...(all[name] ?? values), [field]: value } }));
  };
  return { values, change };
}

function WatchedTask({ taskId }: { taskId: string }) {
  const { task, error } = useWatchedTask(taskId);
  return (
    <section aria-labelledby="watch-title" className="panel" aria-live="polite">
      <h2 id="watch-title">
        Task <Link href={`/tasks/${taskId}`}>{taskId}</Link>
      </h2>
      <ErrorNote error={error} />
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
          {task.result !== null && task.result !== "" && (
            <>
              <h3>Result</h3>
              <TaskResultView result={task.result} />
            </>
          )}
          {task.last_error && task.state !== "COMPLETED" && <p className="error-text">Last error: {task.last_error}</p>}
        </>
      )}
    </section>
  );
}

export function SubmitPage() {
  const { query } = useRoute();
  const { types, error: typesError } = useTaskTypes();
  const type = types ? chooseType(types, query.get("type")) : null;
  const fields = type ? fieldsOf(type.input_schema) : [];
  const { values, change } = useFormValues(type, fields);
  // One priority for every type: it stays when another type is chosen.
  const [priority, setPriority] = useState<number>(DEFAULT_PRIORITY);
  const [taskId, setTaskId] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  // Per field: why the form did not send it, or why the API refused it (until the field is edited).
  const [problems, setProblems] = useState<Record<string, string[]>>({});
  const [busy, setBusy] = useState(false);

  const choose = (name: string) => {
    setError(null);
    setProblems({});
    navigate(`/submit?type=${encodeURIComponent(name)}`, true);
  };
  const edit = (name: string, value: FieldValue) => {
    change(name, value);
    setProblems(({ [name]: _edited, ...others }) => others);
  };
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!type) return;
    const { body, errors } = buildBody(fields, values);
    setProblems(Object.fromEntries(Object.entries(errors).map(([name, problem]) => [name, [problem]])));
    setError(null);
    if (Object.keys(errors).length) return;
    setBusy(true);
    try {
      const accepted = await sendJson<TaskAccepted>("POST", type.submit_path, { ...body, [PRIORITY]: priority });
      setTaskId(accepted?.task_id ?? null);
    } catch (err) {
      setError(err);
      setProblems(serverFieldErrors(err instanceof ApiError ? err : null, fields, [PRIORITY]));
    } finally {
      setBusy(false);
    }
  };

  const contentBlank = fields.some((f) => f.name === "content" && f.required && !String(values.content ?? "").trim());
  const unavailable = type !== null && !type.available;

  return (
    <>
      <h1>Submit a task</h1>
      <ErrorNote error={typesError} />
      {types && type && (
        <form onSubmit={submit} className="submit-form" noValidate aria-label={`Submit ${type.name}`}>
          <TypeChoice types={types} chosen={type.name} onChoose={choose} />
          <fieldset className="type-fields" disabled={unavailable}>
            <SchemaFields fields={fields} values={values} onChange={edit} problems={problems} typeName={type.name} onFileError={setError} />
            <PriorityField
              value={priority}
              onChange={(value) => {
                setPriority(value);
                setProblems(({ [PRIORITY]: _edited, ...others }) => others);
              }}
              problems={problems[PRIORITY] ?? []}
            />
          </fieldset>
          {unavailable && (
            <p className="reason" data-testid="unavailable">
              {unavailableDetail(type)}
            </p>
          )}
          <button type="submit" disabled={busy || unavailable || contentBlank}>
            Submit
          </button>
        </form>
      )}
      <ErrorNote error={error} />
      {taskId && <WatchedTask taskId={taskId} />}
    </>
  );
}
