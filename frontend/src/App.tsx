// The shell: navigation, the connection indicator, the API key entry, and the page for the path.
import { useState, type FormEvent } from "react";
import { getApiKey, setApiKey } from "./api";
import { useConnection, type ConnectionState } from "./connection";
import { LiveProvider } from "./LiveContext";
import { Link, useRoute } from "./router";
import { DashboardPage } from "./pages/Dashboard";
import { DlqPage } from "./pages/Dlq";
import { SubmitPage } from "./pages/Submit";
import { TaskDetailPage } from "./pages/TaskDetail";
import { TasksPage } from "./pages/Tasks";

const NAV = [
  { href: "/", label: "Dashboard" },
  { href: "/tasks", label: "Tasks" },
  { href: "/dlq", label: "DLQ" },
  { href: "/submit", label: "Submit" },
];

/** What the indicator says, from the connection state: the worst problem wins. */
export function describeConnection(state: ConnectionState): { level: "ok" | "warn" | "down"; text: string } {
  if (state.api === "down") return { level: "down", text: "API unreachable — reconnecting…" };
  if (state.authRequired) return { level: "warn", text: "API key required" };
  if (state.stream === "open") return { level: "ok", text: "Live" };
  if (state.stream === "reconnecting") return { level: "warn", text: "Live stream lost — reconnecting…" };
  return { level: "warn", text: "Connecting…" };
}

export function ConnectionIndicator() {
  const state = useConnection();
  const { level, text } = describeConnection(state);
  return (
    <div className={`indicator indicator-${level}`} role="status" aria-live="polite" data-testid="connection">
      <span className="dot" aria-hidden="true" />
      {text}
    </div>
  );
}

export function KeyForm({ onDone }: { onDone?: () => void }) {
  const [key, setKey] = useState(getApiKey());
  const save = (event: FormEvent) => {
    event.preventDefault();
    setApiKey(key.trim());
    onDone?.();
  };
  return (
    <form className="key-form" onSubmit={save} aria-label="Set the API key">
      <label htmlFor="api-key">API key</label>
      <input
        id="api-key"
        type="password"
        autoComplete="off"
        value={key}
        onChange={(e) => setKey(e.target.value)}
        placeholder="sent as Authorization: Bearer …"
      />
      <button type="submit">Save key</button>
    </form>
  );
}

function Page() {
  const { path } = useRoute();
  if (path === "/") return <DashboardPage />;
  if (path === "/tasks" || path === "/tasks/") return <TasksPage />;
  if (path.startsWith("/tasks/")) return <TaskDetailPage taskId={decodeURIComponent(path.slice(7))} />;
  if (path === "/dlq") return <DlqPage />;
  if (path === "/submit") return <SubmitPage />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        No page at <code>{path}</code>. <Link href="/">Back to the dashboard</Link>.
      </p>
    </section>
  );
}

export function App() {
  const { path } = useRoute();
  const { authRequired, api } = useConnection();
  const [showKey, setShowKey] = useState(false);
  const current = (href: string) => (href === "/" ? path === "/" : path.startsWith(href));
  return (
    <LiveProvider>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/" className="brand">
          AsyncTaskFlow
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.href}>
                <Link href={item.href} aria-current={current(item.href) ? "page" : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <ConnectionIndicator />
        <button type="button" className="link-button" onClick={() => setShowKey((v) => !v)} aria-expanded={showKey}>
          API key
        </button>
      </header>
      {(authRequired || showKey) && (
        <div className="key-banner">
          {authRequired && <p role="alert">The API requires a key (it answered 401). Enter it to continue.</p>}
          <KeyForm onDone={() => setShowKey(false)} />
        </div>
      )}
      <main id="main" tabIndex={-1} className={api === "down" ? "stale" : undefined} aria-busy={api === "down"}>
        <Page />
      </main>
    </LiveProvider>
  );
}
