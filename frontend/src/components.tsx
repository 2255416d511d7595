// Pieces shared by the pages.
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { ApiError } from "./api";

/** Label → value facts, laid out as the `facts` grid (a task's, the provider's, a key's usage). */
export function FactList({ rows, testId }: { rows: [string, string][]; testId?: string }) {
  return (
    <dl className="facts" data-testid={testId}>
      {rows.map(([label, value]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state.toLowerCase()}`}>{state}</span>;
}

/** A task's type (summarize, translate, extract, chat, …). */
export function TypeBadge({ type }: { type: string }) {
  return <span className="badge type-badge">{type}</span>;
}

/** The API's refusal, in its own words, announced to screen readers. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const text = error instanceof ApiError ? error.message : String(error);
  const code = error instanceof ApiError && error.status ? ` (${error.status} ${error.code})` : "";
  return (
    <p className="error-note" role="alert">
      {text}
      <span className="muted">{code}</span>
    </p>
  );
}

export function Notice({ children }: { children: ReactNode }) {
  return (
    <p className="notice" role="status">
      {children}
    </p>
  );
}

/** Load something from the API and reload it on demand or every `everyMs`; keeps the last good value. */
export function usePoll<T>(load: () => Promise<T>, everyMs: number | null, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const latest = useRef(load);
  latest.current = load;
  const reload = useCallback(async () => {
    try {
      setData(await latest.current());
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, []);
  useEffect(() => {
    void reload();
    if (everyMs === null) return;
    const timer = setInterval(() => void reload(), everyMs);
    return () => clearInterval(timer);
  }, [reload, everyMs, ...deps]);
  return { data, error, reload, setData };
}

/** A confirmation dialog (the native <dialog>: focus is trapped and Escape cancels). */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirm: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) dialog.showModal?.() ?? dialog.setAttribute("open", "");
    if (!props.open && dialog.open) dialog.close?.() ?? dialog.removeAttribute("open");
  }, [props.open]);
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onCancel={props.onCancel} className="dialog">
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div className="actions">
        <button type="button" onClick={props.onCancel} autoFocus>
          Cancel
        </button>
        <button type="button" className="danger" onClick={props.onConfirm}>
          {props.confirm}
        </button>
      </div>
    </dialog>
  );
}
