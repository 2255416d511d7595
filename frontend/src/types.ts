// Shapes of the API's bodies (api/schemas.py). Timestamps are epoch milliseconds; null is "not yet".

export const STATES = ["PENDING", "ACTIVE", "SCHEDULED", "COMPLETED", "FAILED", "DLQ", "CANCELLED"] as const;
export type TaskState = (typeof STATES)[number];
export const TERMINAL: ReadonlySet<string> = new Set(["COMPLETED", "FAILED", "DLQ", "CANCELLED"]);

export interface QueueDepths {
  primary: number;
  retry: number;
  scheduled: number;
  dlq: number;
}

/** A task's priority: 0 runs first, 9 last; a task submitted without one gets DEFAULT_PRIORITY. */
export const PRIORITIES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const;
export const DEFAULT_PRIORITY = 5;

/** The pending work of one priority level: new work (primary) and due retries (retry). */
export interface PriorityDepth {
  priority: number;
  primary: number;
  retry: number;
}

/** One API key's pending tasks (`backlog`) and its tasks running now (`active`); owner "" is the
 * work submitted while no API keys are configured. */
export interface OwnerBacklog {
  owner: string;
  backlog: number;
  active: number;
}

export interface QueueStatus {
  queues: QueueDepths;
  states: Partial<Record<TaskState, number>>;
  retry_ratio: number;
  workers: number;
  /** Levels 0–9, each once (absent from an older API). `queues.primary`/`retry` are the totals. */
  priorities?: PriorityDepth[];
  /** Up to 10 keys with the most pending tasks, most first (absent from an older API). */
  top_owners?: OwnerBacklog[];
}

export interface HistoryEntry {
  at: number;
  from: string;
  to: string;
  worker?: string | null;
  error?: string | null;
  error_type?: string | null;
}

/** Any JSON value, as a JSON-format type's result or a task's params hold. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A task's result once COMPLETED: text for a type whose `result_format` is "text", the JSON
 * itself (an object or array) for a "json" type (an older task of a JSON type may hold text). */
export type TaskResult = string | { [key: string]: JsonValue } | JsonValue[];

export interface Task {
  task_id: string;
  task_type: string;
  state: TaskState;
  /** 0–9, lower runs first (absent from an older API). */
  priority?: number;
  content: string;
  /** The type's other input fields, as submitted (null: it has none; absent from an older API). */
  params?: { [key: string]: JsonValue } | null;
  result: TaskResult | null;
  provider: string | null;
  retry_count: number;
  max_retries: number;
  last_error: string | null;
  error_type: string | null;
  worker: string | null;
  created_at: number | null;
  updated_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  due_at: number | null;
  attempts: number;
  progress: number;
  current_step: string | null;
  model: string | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  timings: { queued_ms: number | null; run_ms: number | null; total_ms: number | null };
  /** What the task's state allows, from the API's own table (absent from an older API). */
  actions?: TaskAction[];
}

export type TaskAction = "retry" | "cancel" | "delete";

export interface TaskDetail extends Task {
  history: HistoryEntry[];
  errors: HistoryEntry[];
}

export interface TaskPage {
  items: Task[];
  next_cursor: string | null;
}

export interface Breaker {
  state: "closed" | "open" | "half-open";
  fail_counter: number;
  seconds_left: number;
}

export interface WorkerInfo {
  consumer_id: string;
  worker_id: string | null;
  host: string | null;
  pid: number | null;
  concurrency: number | null;
  inflight: number | null;
  retry_ratio: number | null;
  breaker: string | null;
  taken: Record<string, number> | null;
  started_at: number | null;
  last_heartbeat: number | null;
  processed: number;
  completed: number;
  failed: number;
}

export interface Workers {
  workers: WorkerInfo[];
  breaker: Breaker;
}

export interface Health {
  /** `degraded` (still a 200): working, but slowed down, e.g. by the provider's 429s (see `warnings`). */
  status: "ok" | "degraded" | "unhealthy";
  redis: "ok" | "unreachable";
  workers: number | null;
  scheduler: "ok" | "missing" | null;
  breaker: Breaker["state"] | null;
  problems: string[];
  auth?: "api_keys" | "open";
  warnings?: string[];
  /** Where the API keeps tasks, its password redacted. */
  redis_url?: string;
}

/** A JSON Schema as the API sends it (pydantic's): only the keywords the submit form reads are named. */
export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  enum?: JsonValue[];
  const?: JsonValue;
  default?: JsonValue;
  examples?: JsonValue[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  definitions?: Record<string, JsonSchema>;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  format?: string;
}

/** GET /api/v1/task-types: a kind of job the API accepts, and the JSON Schema of its submit body. */
export interface TaskTypeInfo {
  name: string;
  description: string;
  /** POST one input here (`<submit_path>bulk` takes `{"items": [...]}`). */
  submit_path: string;
  result_format: "text" | "json";
  /** split: any length, worked on in pieces; refuse: more than CHUNK_CHARS is a 413. */
  long_input: "split" | "refuse";
  answers_offline: boolean;
  /** False while no LLM provider is configured and the type needs one (a submit is 422 provider_required). */
  available: boolean;
  input_schema: JsonSchema;
}

/** GET /api/v1/usage: the calling key's limits (null: none) and what it uses now. */
export interface KeyUsage {
  /** The key's id; "" when no API keys are configured. */
  key: string;
  /** The day `tokens_today` counts (the server's, YYYY-MM-DD). */
  day: string;
  limits: { concurrency: number | null; daily_tokens: number | null };
  active: number;
  backlog: number;
  tokens_today: number;
  /** Why this key's tasks wait now, if they do. */
  waiting: "concurrency" | "daily_tokens" | null;
  /** Epoch ms when they run again (the daily tokens' reset), or null. */
  resumes_at: number | null;
}

/** The reply to a submit (202). */
export interface TaskAccepted {
  task_id: string;
  task_type: string;
  state: TaskState;
  created_at: number;
}

/** GET /api/v1/openrouter/status (fields read defensively: older APIs lack the route). */
export interface ProviderStatus {
  provider?: string;
  base_url?: string | null;
  model?: string | null;
  fallback_models?: string[];
  key_configured?: boolean;
  account?: {
    key_valid?: boolean | null;
    label?: string | null;
    usage?: number | null;
    limit?: number | null;
    limit_remaining?: number | null;
    is_free_tier?: boolean | null;
    error?: string | null;
  } | null;
  rate_limit?: { enabled?: boolean; requests?: number; interval_seconds?: number; pace?: number } | null;
  breaker?: Breaker | null;
  paused?: boolean;
  paused_until?: number | null;
  pause_reason?: string | null;
  last_error?: string | null;
  last_error_type?: string | null;
  last_error_at?: number | null;
  last_success_at?: number | null;
  last_model?: string | null;
}

export interface Statistics {
  states: Partial<Record<TaskState, number>>;
  totals: Record<string, number>;
  success_rate: number | null;
  duration_p50_ms: number | null;
  duration_p95_ms: number | null;
  duration_mean_ms: number | null;
  throughput_last_minute: { completed: number; failed: number };
  throughput_last_hour: { completed: number; failed: number };
}

export interface ThroughputBucket {
  /** Epoch ms. */
  start: number;
  completed: number;
  failed: number;
}

/** GET /api/v1/queues/throughput: the server's rings, oldest first, and the time of the read. */
export interface ThroughputHistory {
  now: number;
  seconds: ThroughputBucket[];
  minutes: ThroughputBucket[];
}

/** A `transition` event of the live stream: `to` is "" for a deletion, `from` "" for a creation. */
export interface TransitionEvent {
  event: "transition";
  task_id: string;
  from: string;
  to: string;
  at: number;
  worker?: string | null;
  error_type?: string;
  counters?: Record<string, number>;
}

export interface ProgressEvent {
  event: "progress";
  task_id: string;
  at: number;
  progress: number;
  current_step?: string | null;
}

export type TaskEvent = TransitionEvent | ProgressEvent;
