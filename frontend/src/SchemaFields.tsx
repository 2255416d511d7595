// The controls of a task type's submit form, one per field of its schema (see schema-form.ts):
// each with its label (optional ones marked), its description, and its problem next to it, the
// form's own (not JSON, out of range…) or the server's 422.
import { useState, type DragEvent, type ReactNode } from "react";
import { jsonProblem, type FieldSpec, type FieldValue, type FormValues } from "./schema-form";
import type { JsonSchema } from "./types";

export function readDroppedText(event: DragEvent<HTMLElement>): Promise<string> | null {
  const file = event.dataTransfer.files[0];
  if (!file) return null;
  if (!(file.type.startsWith("text/") || file.name.endsWith(".txt"))) return Promise.reject(new Error("Drop a .txt file"));
  return file.text();
}

interface FieldProps {
  field: FieldSpec;
  value: FieldValue;
  onChange: (value: FieldValue) => void;
  /** The problems to show under the field (the form's or the server's). */
  problems: string[];
  /** The type's name, for the content's label ("Text to summarize"). */
  typeName: string;
  /** Where a dropped or chosen file's unreadable type is reported. */
  onFileError: (error: unknown) => void;
}

const id = (field: FieldSpec) => `field-${field.name}`;

function placeholderOf(field: FieldSpec): string | undefined {
  if (field.kind === "json") return field.required ? undefined : field.example;
  const example = field.schema.examples?.[0];
  return example === undefined ? undefined : `e.g. ${typeof example === "string" ? example : JSON.stringify(example)}`;
}

/** A number input's min and max: the schema's, an integer's exclusive bounds moved in by one
 * (a number's exclusive bounds have no equivalent attribute: the form checks them on submit). */
function bounds(schema: JsonSchema): [number | undefined, number | undefined] {
  const integer = schema.type === "integer";
  const above = integer && schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : undefined;
  const below = integer && schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum - 1 : undefined;
  return [schema.minimum ?? above, schema.maximum ?? below];
}

type ControlProps = FieldProps & { described: string | undefined; invalid: boolean };

function Control({ field, value, onChange, described, invalid }: ControlProps) {
  const common = {
    id: id(field),
    "aria-describedby": described,
    "aria-invalid": invalid || undefined,
    placeholder: placeholderOf(field),
  };
  const { schema } = field;
  switch (field.kind) {
    case "checkbox":
      return <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />;
    case "select":
      return (
        <select {...common} value={String(value)} onChange={(e) => onChange(e.target.value)}>
          {!field.required && <option value="">(not set)</option>}
          {field.options.map((option) => (
            <option key={JSON.stringify(option)} value={JSON.stringify(option)}>
              {String(option)}
            </option>
          ))}
        </select>
      );
    case "number": {
      const [min, max] = bounds(schema);
      const step = schema.type === "integer" ? 1 : "any";
      return <input {...common} type="number" min={min} max={max} step={step} value={String(value)} onChange={(e) => onChange(e.target.value)} />;
    }
    case "text":
      return <input {...common} type="text" maxLength={schema.maxLength} value={String(value)} onChange={(e) => onChange(e.target.value)} />;
    case "textarea":
      return (
        <textarea {...common} rows={10} maxLength={schema.maxLength} value={String(value)} onChange={(e) => onChange(e.target.value)} />
      );
    case "json":
      return (
        <textarea
          {...common}
          className="json-input"
          rows={Math.min(14, Math.max(4, String(value || field.example).split("\n").length + 1))}
          spellCheck={false}
          value={String(value)}
          onChange={(e) => onChange(e.target.value)}
        />
      );
  }
}

/** The content field: a text area that also takes a dropped or chosen .txt file. */
function ContentDrop({ children, field, value, onChange, onFileError }: FieldProps & { children: ReactNode }) {
  const [dragging, setDragging] = useState(false);
  const take = (text: Promise<string> | null) => void text?.then(onChange).catch(onFileError);
  const drop = (event: DragEvent<HTMLElement>) => {
    event.preventDefault();
    setDragging(false);
    take(readDroppedText(event));
  };
  return (
    <div
      className={`dropzone${dragging ? " dragging" : ""}`}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={drop}
    >
      {children}
      <div className="file-row">
        <label htmlFor={`${id(field)}-file`} className="muted">
          …or choose a file:
        </label>
        <input id={`${id(field)}-file`} type="file" accept=".txt,text/plain" onChange={(e) => take(e.target.files?.[0]?.text() ?? null)} />
        <span className="muted small">{String(value).length.toLocaleString()} characters</span>
      </div>
    </div>
  );
}

function Field(props: FieldProps) {
  const { field, value, problems, typeName } = props;
  const own = field.kind === "json" ? jsonProblem(field, String(value)) : "";
  const shown = own && !problems.includes(own) ? [own, ...problems] : problems;
  const content = field.name === "content" && field.kind === "textarea";
  const hint = field.description && !content ? `${id(field)}-hint` : undefined;
  const problem = shown.length ? `${id(field)}-problem` : undefined;
  const described = [hint, problem].filter(Boolean).join(" ") || undefined;
  const label = content ? `Text to ${typeName} (paste it, or drop a .txt file here)` : field.label;
  const inner = (
    <>
      <label htmlFor={id(field)} className={field.kind === "checkbox" ? "checkbox-label" : undefined}>
        {field.kind === "checkbox" && <Control {...props} described={described} invalid={Boolean(problem)} />}
        {label}
        {!field.required && " "}
        {!field.required && <span className="muted">(optional)</span>}
        {field.kind === "json" && " "}
        {field.kind === "json" && <span className="muted small">— JSON</span>}
      </label>
      {hint && (
        <span id={hint} className="muted small">
          {field.description}
        </span>
      )}
      {field.kind !== "checkbox" && <Control {...props} described={described} invalid={Boolean(problem)} />}
      {problem && (
        <ul id={problem} className="field-problems" data-testid={`problem-${field.name}`}>
          {shown.map((text, i) => (
            <li key={i}>{text}</li>
          ))}
        </ul>
      )}
    </>
  );
  return (
    <div className="field" data-field={field.name}>
      {content ? <ContentDrop {...props}>{inner}</ContentDrop> : inner}
    </div>
  );
}

/** Every field of the form, in the schema's order. */
export function SchemaFields(props: {
  fields: FieldSpec[];
  values: FormValues;
  onChange: (name: string, value: FieldValue) => void;
  problems: Record<string, string[]>;
  typeName: string;
  onFileError: (error: unknown) => void;
}) {
  return (
    <>
      {props.fields.map((field) => (
        <Field
          key={field.name}
          field={field}
          value={props.values[field.name] ?? ""}
          onChange={(value) => props.onChange(field.name, value)}
          problems={props.problems[field.name] ?? []}
          typeName={props.typeName}
          onFileError={props.onFileError}
        />
      ))}
    </>
  );
}
