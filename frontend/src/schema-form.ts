// The submit form of a task type, built from the JSON Schema of its body (GET /api/v1/task-types):
// which control each field gets, what the form starts with, the body it sends, and where the
// server's 422 puts each refusal. Pure functions; the controls themselves are in SchemaFields.tsx.
import type { ApiError } from "./api";
import type { JsonSchema, JsonValue } from "./types";

/** text: one line; textarea: the content and long strings; json: objects, arrays and mixtures. */
export type FieldKind = "text" | "textarea" | "select" | "number" | "checkbox" | "json";

/** What a control holds: the typed text (a select's is its option's JSON), or a checkbox's state. */
export type FieldValue = string | boolean;
export type FormValues = Record<string, FieldValue>;

export interface FieldSpec {
  /** The body's property (an alias such as extract's `schema`), and the 422's `loc[1]`. */
  name: string;
  label: string;
  description: string;
  required: boolean;
  kind: FieldKind;
  /** The field's schema, its `$ref` resolved and its `null` branch (an optional field's) removed. */
  schema: JsonSchema;
  /** A select's values. */
  options: JsonValue[];
  /** A JSON field's example (the schema's own `examples`, else one made from the schema), as text. */
  example: string;
}

const MAX_DEPTH = 8; // of $ref chains and synthesized examples: a recursive schema stops here
const LONG_STRING = 200; // a string allowed more characters than this gets a textarea

/** The schema a `$ref` (a JSON pointer into the root, e.g. `#/$defs/ChatMessage`) points to. */
function lookUp(ref: string, root: JsonSchema): JsonSchema {
  if (!ref.startsWith("#/")) return {};
  let node: unknown = root;
  for (const part of ref.slice(2).split("/")) {
    const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
    node = typeof node === "object" && node !== null ? (node as Record<string, unknown>)[key] : undefined;
  }
  return typeof node === "object" && node !== null ? (node as JsonSchema) : {};
}

/** `schema` with its `$ref` (and a lone `allOf` around one) replaced by the schema it names; the
 * outer title, description, default and examples win, as JSON Schema's annotations do. */
export function resolve(schema: JsonSchema, root: JsonSchema, depth = 0): JsonSchema {
  if (depth > MAX_DEPTH) return {};
  const { $ref, allOf, ...rest } = schema;
  if ($ref) return { ...resolve(lookUp($ref, root), root, depth + 1), ...rest };
  if (allOf?.length === 1) return { ...resolve(allOf[0], root, depth + 1), ...rest };
  return schema;
}

const isNull = (s: JsonSchema) => s.type === "null";

/** The field's schema without the `null` that makes it optional (`X | None` is `anyOf [X, null]`). */
export function withoutNull(schema: JsonSchema, root: JsonSchema): JsonSchema {
  const resolved = resolve(schema, root);
  const { anyOf, oneOf, ...rest } = resolved;
  const branches = (anyOf ?? oneOf)?.filter((b) => !isNull(resolve(b, root)));
  if (branches?.length === 1) return { ...resolve(branches[0], root), ...rest };
  if (branches) return { ...rest, anyOf: branches };
  if (Array.isArray(resolved.type)) {
    const types = resolved.type.filter((t) => t !== "null");
    return { ...resolved, type: types.length === 1 ? types[0] : types };
  }
  return resolved;
}

export function kindOf(name: string, schema: JsonSchema): FieldKind {
  if (schema.enum || schema.const !== undefined) return "select";
  switch (schema.type) {
    case "string":
      return name === "content" || (schema.maxLength ?? 0) > LONG_STRING ? "textarea" : "text";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "checkbox";
    default:
      return "json"; // object, array, or a choice of several types (the API checks which)
  }
}

/** A value that fits `schema`, for a JSON field without `examples`: the required properties of an
 * object, one item of an array that needs one, an enum's first value. */
export function synthesize(schema: JsonSchema, root: JsonSchema, depth = 0): JsonValue {
  const s = withoutNull(schema, root);
  if (s.examples?.length) return s.examples[0];
  if (s.const !== undefined) return s.const;
  if (s.enum?.length) return s.enum[0];
  if (s.default !== undefined && s.default !== null) return s.default;
  if (depth > MAX_DEPTH) return null;
  if (s.anyOf?.length) return synthesize(s.anyOf[0], root, depth + 1);
  switch (s.type) {
    case "object": {
      const props = s.properties ?? {};
      const entries = (s.required ?? []).filter((k) => k in props).map((k) => [k, synthesize(props[k], root, depth + 1)]);
      return Object.fromEntries(entries);
    }
    case "array":
      return s.items ? [synthesize(s.items, root, depth + 1)] : [];
    case "string":
      return "";
    case "integer":
    case "number":
      return s.minimum ?? 0;
    case "boolean":
      return false;
    default:
      return null;
  }
}

export const pretty = (value: unknown) => JSON.stringify(value, null, 2);

/** The form's fields, in the schema's order. */
export function fieldsOf(root: JsonSchema): FieldSpec[] {
  const body = resolve(root, root);
  const required = new Set(body.required ?? []);
  return Object.entries(body.properties ?? {}).map(([name, raw]) => {
    const schema = withoutNull(raw, root);
    const kind = kindOf(name, schema);
    const options = schema.enum ?? (schema.const !== undefined ? [schema.const] : []);
    const example = kind === "json" ? pretty(synthesize(schema, root)) : "";
    const label = schema.title ?? name;
    return { name, label, description: schema.description ?? "", required: required.has(name), kind, schema, options, example };
  });
}

/** What each control starts with: the schema's default; a required JSON field its example, so the
 * form shows the shape wanted (an optional one shows it as a placeholder, and sends nothing). */
export function initialValues(fields: FieldSpec[]): FormValues {
  const start = (f: FieldSpec): FieldValue => {
    const fallback = f.schema.default ?? null;
    switch (f.kind) {
      case "checkbox":
        return fallback === true;
      case "select":
        if (fallback !== null) return JSON.stringify(fallback);
        return f.required && f.options.length ? JSON.stringify(f.options[0]) : "";
      case "json":
        return f.required ? f.example : "";
      default:
        return fallback === null ? "" : String(fallback);
    }
  };
  return Object.fromEntries(fields.map((f) => [f.name, start(f)]));
}

/** Why a JSON field's text cannot be sent ("" when it can). */
export function jsonProblem(field: FieldSpec, text: string): string {
  if (!text.trim()) return "";
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `Not valid JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
  if (field.schema.type === "object" && !isObject) return "Must be a JSON object: {…}";
  if (field.schema.type === "array" && !Array.isArray(value)) return "Must be a JSON array: […]";
  return "";
}

function numberProblem(schema: JsonSchema, n: number): string {
  if (Number.isNaN(n)) return "Not a number";
  if (schema.type === "integer" && !Number.isInteger(n)) return "Must be a whole number";
  if (schema.minimum !== undefined && n < schema.minimum) return `At least ${schema.minimum}`;
  if (schema.maximum !== undefined && n > schema.maximum) return `At most ${schema.maximum}`;
  if (schema.exclusiveMinimum !== undefined && n <= schema.exclusiveMinimum) return `More than ${schema.exclusiveMinimum}`;
  if (schema.exclusiveMaximum !== undefined && n >= schema.exclusiveMaximum) return `Less than ${schema.exclusiveMaximum}`;
  return "";
}

type Built = { value: JsonValue } | { error: string } | null; // null: left out of the body

function valueOf(field: FieldSpec, raw: FieldValue): Built {
  if (field.kind === "checkbox") {
    const checked = raw === true;
    // An optional flag is sent only when it differs from what the API assumes without it.
    return field.required || checked !== (field.schema.default === true) ? { value: checked } : null;
  }
  const text = String(raw);
  if (!text.trim()) return field.required ? { error: "Required" } : null;
  switch (field.kind) {
    case "select":
      return { value: JSON.parse(text) as JsonValue };
    case "number": {
      const n = Number(text);
      const problem = numberProblem(field.schema, n);
      return problem ? { error: problem } : { value: n };
    }
    case "json": {
      const problem = jsonProblem(field, text);
      return problem ? { error: problem } : { value: JSON.parse(text) as JsonValue };
    }
    default:
      return { value: text };
  }
}

/** The submit body, or per field why it cannot be sent yet. Optional fields left empty are left
 * out, so the API applies its own defaults. */
export function buildBody(fields: FieldSpec[], values: FormValues): { body: Record<string, JsonValue>; errors: Record<string, string> } {
  const body: Record<string, JsonValue> = {};
  const errors: Record<string, string> = {};
  for (const field of fields) {
    const built = valueOf(field, values[field.name] ?? "");
    if (built && "error" in built) errors[field.name] = built.error;
    else if (built) body[field.name] = built.value;
  }
  return { body, errors };
}

/** A 422's refusals by the field they name (`loc: ["body", field, …]`), each with the path inside
 * the field when there is one (`0.content: …` for chat's first message). `others` names the body's
 * fields the form sends besides the schema's (the priority). */
export function serverFieldErrors(error: ApiError | null, fields: FieldSpec[], others: string[] = []): Record<string, string[]> {
  const names = new Set([...fields.map((f) => f.name), ...others]);
  const found: Record<string, string[]> = {};
  for (const problem of error?.detail ?? []) {
    const [where, name, ...inside] = problem.loc;
    if (where !== "body" || typeof name !== "string" || !names.has(name)) continue;
    const text = inside.length ? `${inside.join(".")}: ${problem.msg}` : problem.msg;
    (found[name] ??= []).push(text);
  }
  return found;
}
