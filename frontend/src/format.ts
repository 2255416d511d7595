// Small formatting helpers shared by the pages.

export function ago(ms: number | null | undefined, now: number = Date.now()): string {
  if (!ms) return "—";
  const seconds = Math.max(0, (now - ms) / 1000);
  if (seconds < 1) return "just now";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function time(ms: number | null | undefined): string {
  return ms ? new Date(ms).toLocaleString() : "—";
}

export function shortId(id: string): string {
  return id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

export function percent(ratio: number | null | undefined): string {
  return ratio === null || ratio === undefined ? "—" : `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)} %`;
}

/** A priority level as the pages name it: 0 runs first, 5 is what a task gets when none is given. */
export function priorityLabel(priority: number): string {
  if (priority === 0) return "0 (runs first)";
  if (priority === 5) return "5 (default)";
  if (priority === 9) return "9 (runs last)";
  return String(priority);
}

/** An API key's id; "" is the work submitted while no API keys are configured. */
export function ownerLabel(owner: string): string {
  return owner === "" ? "(no key)" : owner;
}
