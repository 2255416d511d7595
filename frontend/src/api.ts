// The one door to the HTTP API: every request carries the API key (when one is set), and every
// answer updates the connection state the header shows (API reachable, key required).
import { connection } from "./connection";

const KEY_STORAGE = "atf.apiKey";

/** One entry of a 422's `detail`: where the refused value is (`["body", "target_language"]`) and why. */
export interface FieldProblem {
  loc: (string | number)[];
  msg: string;
  type?: string;
}

/** An API refusal or an unreachable API; `message` is the API's own words when it gave any, and
 * `detail` a 422's list of refused fields. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly detail: FieldProblem[] = [],
  ) {
    super(message);
    this.name = "ApiError";
  }
}

function fieldProblems(detail: unknown): FieldProblem[] {
  if (!Array.isArray(detail)) return [];
  return detail.filter(
    (d): d is FieldProblem => typeof d === "object" && d !== null && Array.isArray(d.loc) && typeof d.msg === "string",
  );
}

export function getApiKey(): string {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

export function setApiKey(key: string): void {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Private mode without storage: the key lives for this page only.
  }
  memoryKey = key;
  connection.set({ authRequired: false });
  window.dispatchEvent(new Event(KEY_CHANGED));
}

/** Fired on window when the key changes, so waiting reconnects try the new key at once. */
export const KEY_CHANGED = "atf:key-changed";

let memoryKey: string | null = null;

/** Headers that authenticate a request (both forms the API accepts; EventSource could send neither). */
export function authHeaders(): Record<string, string> {
  const key = memoryKey ?? getApiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorFrom(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  let detail: FieldProblem[] = [];
  try {
    const body = (await response.json()) as { code?: string; message?: string; detail?: unknown };
    if (body.code) code = body.code;
    if (body.message) message = body.message;
    else if (typeof body.detail === "string") message = body.detail;
    detail = fieldProblems(body.detail);
  } catch {
    // Not JSON (a proxy's page): keep the status line.
  }
  return new ApiError(response.status, code, message, detail);
}

/** Whether an answer came from the API itself: a gateway error means the proxy could not reach it. */
export function apiAnswered(status: number): boolean {
  return status !== 502 && status !== 504;
}

/** Record what an answer says about the connection, then hand it back. A 401 to a request sent
 * with another key than the current one says nothing about the current key: it was on its way
 * while the key was saved, and would otherwise ask for the key again after it was given. */
export function observe(response: Response, sent: Record<string, string>): Response {
  const stale = sent.Authorization !== authHeaders().Authorization;
  if (!apiAnswered(response.status)) connection.set({ api: "down" });
  else if (response.status === 401 && !stale) connection.set({ api: "up", authRequired: true });
  else connection.set({ api: "up" });
  return response;
}

/** fetch with the key, the connection bookkeeping, and the API's error body turned into ApiError. */
export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = { ...authHeaders(), ...(init.headers as Record<string, string> | undefined) };
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch {
    connection.set({ api: "down" });
    throw new ApiError(0, "unreachable", "The API cannot be reached; retrying by itself.");
  }
  observe(response, headers);
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

export async function sendJson<T>(method: string, path: string, body?: unknown): Promise<T | null> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const response = await request(path, init);
  return response.status === 204 ? null : ((await response.json()) as T);
}
