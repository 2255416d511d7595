// The dashboard: the live flow diagram, queue depths (in all, and by priority), the keys with the
// most pending work, the retry ratio, throughput, the workers with the shared breaker and its
// reset, the provider, this key's usage, and what /health says is wrong.
import { useEffect, useState } from "react";
import { ApiError, getJson, sendJson } from "../api";
import { ErrorNote, FactList, usePoll } from "../components";
import { ago, ownerLabel, percent, priorityLabel, time } from "../format";
import { useLive, useReloadOnEvents } from "../LiveContext";
import { Link } from "../router";
import type { Breaker, KeyUsage, ProviderStatus, QueueStatus, TaskEvent, Workers } from "../types";
import { FlowDiagram } from "./FlowDiagram";
import { ThroughputChart } from "./ThroughputChart";

const WORKERS_POLL_MS = 2000;
const PROVIDER_POLL_MS = 10000;
const PROVIDER_AFTER_EVENT_MS = 1500;
const USAGE_POLL_MS = 5000;

const finished = (event: TaskEvent) => event.event === "transition" && event.from === "ACTIVE";

function QueueCards({ status }: { status: QueueStatus | null }) {
  const cards: [string, number | undefined, string][] = [
    ["Primary", status?.queues.primary, "/tasks?state=PENDING"],
    ["Retry", status?.queues.retry, "/tasks?state=PENDING"],
    ["Scheduled", status?.queues.scheduled, "/tasks?state=SCHEDULED"],
    ["DLQ", status?.queues.dlq, "/dlq"],
    ["Active", status?.states.ACTIVE, "/tasks?state=ACTIVE"],
    ["Cancelled", status?.states.CANCELLED, "/tasks?state=CANCELLED"],
  ];
  return (
    <ul className="cards" aria-label="Queue depths">
      {cards.map(([label, value, href]) => (
        <li key={label} className="card">
          <Link href={href} data-testid={`depth-${label.toLowerCase()}`}>
            <span className="card-label">{label}</span>
            <span className="card-value">{value === undefined ? "…" : value.toLocaleString()}</span>
          </Link>
        </li>
      ))}
      <li className="card" data-testid="retry-ratio">
        <span className="card-label">Retry ratio</span>
        <span className="card-value">{percent(status?.retry_ratio)}</span>
        <span className="muted small">share of pops preferring retry</span>
      </li>
      <li className="card">
        <span className="card-label">Workers</span>
        <span className="card-value">{status?.workers ?? "…"}</span>
      </li>
    </ul>
  );
}

/** The pending work of each priority level with any (primary: new work, retry: due retries), with
 * a bar of its share against the fullest level; the empty levels are left out. */
export function PriorityPanel({ status }: { status: QueueStatus | null }) {
  const levels = status?.priorities ? [...status.priorities].sort((a, b) => a.priority - b.priority) : null;
  const shown = (levels ?? []).filter((level) => level.primary + level.retry > 0);
  const most = Math.max(1, ...shown.map((level) => level.primary + level.retry));
  const width = (n: number) => `${((100 * n) / most).toFixed(1)}%`;
  return (
    <section aria-labelledby="priorities-title" className="panel">
      <h2 id="priorities-title">Pending by priority</h2>
      {!status && <p className="muted">…</p>}
      {status && !levels && <p className="muted">This API does not report pending work by priority.</p>}
      {levels && shown.length === 0 && (
        <p className="muted" data-testid="priorities-empty">
          Nothing pending at any priority.
        </p>
      )}
      {shown.length > 0 && (
        <div className="table-scroll">
          <table aria-label="Pending by priority" data-testid="priorities">
            <thead>
              <tr>
                <th scope="col">Priority</th>
                <th scope="col" className="num">
                  <span className="swatch bar-primary" aria-hidden="true" />
                  Primary
                </th>
                <th scope="col" className="num">
                  <span className="swatch bar-retry" aria-hidden="true" />
                  Retry
                </th>
                <th scope="col">Pending</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((level) => (
                <tr key={level.priority} data-priority={level.priority}>
                  <td>
                    <Link href={`/tasks?state=PENDING&priority=${level.priority}`}>{priorityLabel(level.priority)}</Link>
                  </td>
                  <td className="num" data-testid="priority-primary">
                    {level.primary.toLocaleString()}
                  </td>
                  <td className="num" data-testid="priority-retry">
                    {level.retry.toLocaleString()}
                  </td>
                  <td>
                    <div className="bar-cell">
                      <span className="num">{(level.primary + level.retry).toLocaleString()}</span>
                      <span className="bar" aria-hidden="true">
                        <span className="bar-primary" style={{ width: width(level.primary) }} />
                        <span className="bar-retry" style={{ width: width(level.retry) }} />
                      </span>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {levels && (
        <p className="muted small">
          0 runs first, 9 last; a task submitted without a priority gets 5.
          {shown.length > 0 && shown.length < levels.length && " The empty levels are not listed."}
        </p>
      )}
    </section>
  );
}

/** The keys with the most pending tasks, most first, with their tasks running now. */
export function OwnersPanel({ status }: { status: QueueStatus | null }) {
  const owners = status?.top_owners;
  return (
    <section aria-labelledby="owners-title" className="panel">
      <h2 id="owners-title">Top owners by backlog</h2>
      {!status && <p className="muted">…</p>}
      {status && !owners && <p className="muted">This API does not report pending work by owner.</p>}
      {owners && owners.length === 0 && (
        <p className="muted" data-testid="owners-empty">
          No key has pending work.
        </p>
      )}
      {owners && owners.length > 0 && (
        <div className="table-scroll">
          <table aria-label="Top owners by backlog" data-testid="owners">
            <thead>
              <tr>
                <th scope="col">Owner (API key)</th>
                <th scope="col" className="num">
                  Backlog
                </th>
                <th scope="col" className="num">
                  Active
                </th>
              </tr>
            </thead>
            <tbody>
              {owners.map((owner) => (
                <tr key={owner.owner} data-owner={owner.owner}>
                  <td className={owner.owner ? "clip" : "clip muted"}>{ownerLabel(owner.owner)}</td>
                  <td className="num">{owner.backlog.toLocaleString()}</td>
                  <td className="num">{owner.active.toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The key's usage as label/value rows. */
export function usageRows(u: KeyUsage): [string, string][] {
  const of = (n: number, limit: number | null) => `${n.toLocaleString()}${limit === null ? " (no limit)" : ` of ${limit.toLocaleString()}`}`;
  const waiting =
    u.waiting === "concurrency"
      ? "yes: as many running as the key may run at once"
      : u.waiting === "daily_tokens"
        ? `yes: today's tokens are used up${u.resumes_at ? `, until ${time(u.resumes_at)}` : ""}`
        : "no";
  return [
    ["Key", ownerLabel(u.key)],
    ["Running now", of(u.active, u.limits.concurrency)],
    ["Pending", u.backlog.toLocaleString()],
    [`Tokens today (${u.day})`, of(u.tokens_today, u.limits.daily_tokens)],
    ["Held back", waiting],
  ];
}

/** This dashboard's key: its limits and what it uses (GET /api/v1/usage). */
export function UsagePanel() {
  const { data, error } = usePoll(() => getJson<KeyUsage>("/api/v1/usage"), USAGE_POLL_MS);
  const missing = error instanceof ApiError && (error.status === 404 || error.status === 405);
  return (
    <section aria-labelledby="usage-title" className="panel">
      <h2 id="usage-title">Your key's usage</h2>
      {missing && <p className="muted">This API does not report usage.</p>}
      {!missing && <ErrorNote error={error} />}
      {data && (
        <FactList rows={usageRows(data)} testId="usage" />
      )}
    </section>
  );
}

function BreakerCard({ breaker, onChange }: { breaker: Breaker | null; onChange: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const reset = async () => {
    setBusy(true);
    try {
      await sendJson<Breaker>("POST", "/health/workers/reset-circuit-breaker");
      setError(null);
      onChange();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="breaker" data-testid="breaker">
      <span>
        Shared circuit breaker:{" "}
        <strong className={`badge breaker-${breaker?.state ?? "unknown"}`} data-testid="breaker-state">
          {breaker?.state ?? "unknown"}
        </strong>
        {breaker && breaker.state !== "closed" && (
          <span className="muted">
            {" "}
            · {breaker.fail_counter} failures · probe in {Math.ceil(breaker.seconds_left)} s
          </span>
        )}
      </span>
      <button type="button" onClick={reset} disabled={busy}>
        Reset breaker
      </button>
      <ErrorNote error={error} />
    </div>
  );
}

function WorkersPanel({ data, error, reload }: { data: Workers | null; error: unknown; reload: () => void }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return (
    <section aria-labelledby="workers-title" className="panel">
      <h2 id="workers-title">Workers</h2>
      <BreakerCard breaker={data?.breaker ?? null} onChange={reload} />
      <ErrorNote error={error} />
      {data && data.workers.length === 0 && <p className="muted">No live worker: tasks wait in the queue.</p>}
      {data && data.workers.length > 0 && (
        <div className="table-scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Consumer</th>
                <th scope="col">Heartbeat</th>
                <th scope="col">In flight</th>
                <th scope="col">Done / failed</th>
                <th scope="col">Taken primary / retry</th>
                <th scope="col">Breaker seen</th>
              </tr>
            </thead>
            <tbody>
              {data.workers.map((w) => (
                <tr key={w.consumer_id}>
                  <td>
                    <code title={w.consumer_id}>{w.consumer_id}</code>
                    <div className="muted small">
                      {w.host} · pid {w.pid}
                    </div>
                  </td>
                  <td>{ago(w.last_heartbeat, now)}</td>
                  <td>
                    {w.inflight ?? "—"} / {w.concurrency ?? "—"}
                  </td>
                  <td>
                    {w.completed} / {w.failed}
                  </td>
                  <td data-testid="taken">
                    {w.taken?.primary ?? 0} / {w.taken?.retry ?? 0}
                  </td>
                  <td>{w.breaker ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The provider's status as label/value rows; only what the API reported. */
export function providerRows(p: ProviderStatus, now: number = Date.now()): [string, string][] {
  const rows: [string, string | null][] = [
    ["Provider", p.provider ? `${p.provider}${p.model ? ` · ${p.model}` : ""}` : null],
    ["Fallback models", p.fallback_models?.length ? p.fallback_models.join(", ") : null],
    ["Endpoint", p.base_url ?? null],
    ["API key", p.key_configured === undefined ? null : !p.key_configured ? "none" : p.account?.key_valid === false ? "rejected" : "configured"],
    ["Account", p.account?.error ?? (p.account?.label ? `${p.account.label}${p.account.is_free_tier ? " (free tier)" : ""}` : null)],
    ["Credit left", p.account?.limit_remaining != null ? `${p.account.limit_remaining} of ${p.account.limit ?? "∞"}` : null],
    ["Calls", p.paused ? `paused until ${time(p.paused_until)}${p.pause_reason ? ` (${p.pause_reason})` : ""}` : p.provider ? "flowing" : null],
    ["Rate limit", p.rate_limit ? (p.rate_limit.enabled ? `${p.rate_limit.requests} per ${p.rate_limit.interval_seconds} s, pace ${p.rate_limit.pace}` : "off") : null],
    ["Last success", p.last_success_at ? `${ago(p.last_success_at, now)}${p.last_model ? ` (${p.last_model})` : ""}` : p.provider ? "none yet" : null],
    ["Last error", p.last_error ? `${p.last_error_type ?? "error"}: ${p.last_error} (${ago(p.last_error_at, now)})` : null],
  ];
  return rows.filter((row): row is [string, string] => row[1] !== null);
}

export function ProviderPanel() {
  const { data, error, reload } = usePoll(() => getJson<ProviderStatus>("/api/v1/openrouter/status"), PROVIDER_POLL_MS);
  // A finished attempt may change the last success or error (the workers write them within a
  // second): read again soon after, besides the slow poll.
  useReloadOnEvents(finished, () => void reload(), PROVIDER_AFTER_EVENT_MS);
  const missing = error instanceof ApiError && (error.status === 404 || error.status === 405);
  return (
    <section aria-labelledby="provider-title" className="panel">
      <h2 id="provider-title">Provider</h2>
      {missing && <p className="muted">This API does not report provider status.</p>}
      {!missing && <ErrorNote error={error} />}
      {data && (
        <FactList rows={providerRows(data)} testId="provider" />
      )}
    </section>
  );
}

export function DashboardPage() {
  const { model, health } = useLive();
  const workers = usePoll(() => getJson<Workers>("/health/workers"), WORKERS_POLL_MS);
  // The table's figures move with every claim and report: follow the stream (once a second at most).
  useReloadOnEvents((event) => event.event === "transition", () => void workers.reload(), 1000);
  return (
    <>
      <h1>Dashboard</h1>
      {health && health.problems.length > 0 && (
        <div className="problems" role="status" data-testid="problems">
          <strong>Health: </strong>
          <ul>
            {health.problems.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </div>
      )}
      {health?.warnings && health.warnings.length > 0 && (
        <ul className="warnings muted" aria-label="Warnings">
          {health.warnings.map((w) => (
            <li key={w}>{w}</li>
          ))}
        </ul>
      )}
      <QueueCards status={model.status} />
      <section aria-labelledby="flow-heading" className="panel">
        <h2 id="flow-heading">Task flow</h2>
        <FlowDiagram status={model.status} counters={model.countersRead ? model.counters : null} />
      </section>
      <div className="two-columns">
        <PriorityPanel status={model.status} />
        <div className="stack">
          <OwnersPanel status={model.status} />
          <UsagePanel />
        </div>
      </div>
      <section aria-labelledby="throughput-title" className="panel">
        <h2 id="throughput-title">Throughput (per second, last 15 minutes)</h2>
        <ThroughputChart throughput={model.throughput} />
      </section>
      <div className="two-columns">
        <WorkersPanel data={workers.data} error={workers.error} reload={() => void workers.reload()} />
        <ProviderPanel />
      </div>
    </>
  );
}
