// The submit form built from each type's schema. The schemas are the API's own: the fixture is
// GET /api/v1/task-types of an offline API, and tests/e2e/test_task_types.py checks that it still is.
import { cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import offlineTypes from "./fixtures/task-types.offline.json";
import { fakeApi, type Call } from "./fake-api";
import { LiveProvider } from "./LiveContext";
import { SubmitPage } from "./pages/Submit";
import { buildBody, fieldsOf, initialValues, pretty, serverFieldErrors } from "./schema-form";
import { ApiError } from "./api";
import type { JsonSchema, TaskTypeInfo } from "./types";

const OFFLINE = offlineTypes as unknown as TaskTypeInfo[];
const ONLINE = OFFLINE.map((t) => ({ ...t, available: true }));
const schemaOf = (name: string) => OFFLINE.find((t) => t.name === name)!.input_schema;

afterEach(() => {
  vi.unstubAllGlobals();
  window.history.replaceState(null, "", "/");
});

type Answer = ReturnType<Parameters<typeof fakeApi>[0]>;

/** The Submit page at /submit?type=…, the API offering `types`; `answer` answers the rest. */
async function openSubmit(types: TaskTypeInfo[], type: string | null, answer: (call: Call) => Answer = () => undefined) {
  window.history.replaceState(null, "", type ? `/submit?type=${type}` : "/submit");
  const calls = fakeApi((call) => (call.path === "/api/v1/task-types" ? { status: 200, body: types } : answer(call)));
  render(
    <LiveProvider>
      <SubmitPage />
    </LiveProvider>,
  );
  await screen.findByRole("group", { name: "Task type" });
  return calls;
}

const posts = (calls: Call[]) => calls.filter((c) => c.method === "POST");
const accepted = (type: string) => ({ status: 202, body: { task_id: "t-new", task_type: type, state: "PENDING", created_at: 1 } });

describe("fieldsOf (the controls each built-in schema gets)", () => {
  const kinds = (name: string) => Object.fromEntries(fieldsOf(schemaOf(name)).map((f) => [f.name, [f.kind, f.required]]));

  it("gives each field of the four built-in types its control, and marks the optional ones", () => {
    expect(kinds("summarize")).toEqual({ content: ["textarea", true] });
    expect(kinds("translate")).toEqual({ content: ["textarea", true], target_language: ["text", true], source_language: ["text", false] });
    expect(kinds("extract")).toEqual({ content: ["textarea", true], schema: ["json", true] });
    expect(kinds("chat")).toEqual({
      messages: ["json", true],
      model: ["text", false],
      temperature: ["number", false],
      max_tokens: ["number", false],
      response_format: ["json", false],
    });
  });

  it("resolves $ref into $defs, gives an enum a select and a boolean a checkbox", () => {
    const schema: JsonSchema = {
      type: "object",
      $defs: { Tone: { enum: ["plain", "formal"], type: "string", title: "Tone" } },
      properties: {
        tone: { $ref: "#/$defs/Tone" },
        style: { anyOf: [{ $ref: "#/$defs/Tone" }, { type: "null" }], default: null },
        bullets: { type: "boolean", default: false, title: "Bullets" },
      },
      required: ["tone"],
    };
    const fields = fieldsOf(schema);
    expect(fields.map((f) => [f.name, f.kind, f.required, f.options])).toEqual([
      ["tone", "select", true, ["plain", "formal"]],
      ["style", "select", false, ["plain", "formal"]],
      ["bullets", "checkbox", false, []],
    ]);
    const values = initialValues(fields);
    expect(values).toEqual({ tone: '"plain"', style: "", bullets: false });
    expect(buildBody(fields, values).body).toEqual({ tone: "plain" });
    expect(buildBody(fields, { ...values, style: '"formal"', bullets: true }).body).toEqual({ tone: "plain", style: "formal", bullets: true });
  });

  it("prefills a required JSON field with the schema's example, or one made from its $defs", () => {
    const extract = fieldsOf(schemaOf("extract"));
    expect(initialValues(extract).schema).toBe(pretty({ properties: { name: { type: "string" } }, required: ["name"], type: "object" }));
    const chat = initialValues(fieldsOf(schemaOf("chat")));
    expect(JSON.parse(String(chat.messages))).toEqual([{ role: "user", content: "Name three prime numbers." }]);
    const bare = structuredClone(schemaOf("chat"));
    delete (bare.properties!.messages as { examples?: unknown }).examples;
    expect(JSON.parse(String(initialValues(fieldsOf(bare)).messages))).toEqual([{ role: "system", content: "" }]);
    expect(chat.response_format).toBe(""); // optional: shown as a placeholder, not sent
  });

  it("checks numbers against the schema's bounds and maps a 422's loc to its field", () => {
    const chat = fieldsOf(schemaOf("chat"));
    const start = initialValues(chat);
    expect(buildBody(chat, { ...start, temperature: "2.5", max_tokens: "0" }).errors).toEqual({ temperature: "At most 2", max_tokens: "More than 0" });
    expect(buildBody(chat, { ...start, max_tokens: "1.5" }).errors).toEqual({ max_tokens: "Must be a whole number" });
    const refusal = new ApiError(422, "validation_error", "…", [
      { loc: ["body", "messages", 0, "content"], msg: "Value error, must not be blank" },
      { loc: ["body", "model"], msg: "model 'x' is not allowed" },
      { loc: ["query", "model"], msg: "not a body field" },
    ]);
    expect(serverFieldErrors(refusal, chat)).toEqual({
      messages: ["0.content: Value error, must not be blank"],
      model: ["model 'x' is not allowed"],
    });
    // A body field the form sends besides the schema's (the priority) is found when named.
    const priority = new ApiError(422, "validation_error", "…", [{ loc: ["body", "priority"], msg: "too high" }]);
    expect(serverFieldErrors(priority, chat)).toEqual({});
    expect(serverFieldErrors(priority, chat, ["priority"])).toEqual({ priority: ["too high"] });
  });
});

describe("SubmitPage", () => {
  it("renders each built-in type's controls", async () => {
    await openSubmit(ONLINE, null);
    expect((screen.getByRole("radio", { name: "summarize" }) as HTMLInputElement).checked).toBe(true);
    expect(screen.getByLabelText(/Text to summarize/).tagName).toBe("TEXTAREA");
    expect(screen.getByLabelText("…or choose a file:")).toBeTruthy();

    await userEvent.click(screen.getByRole("radio", { name: "translate" }));
    expect(window.location.search).toBe("?type=translate");
    expect(screen.getByLabelText(/Text to translate/).tagName).toBe("TEXTAREA");
    const target = screen.getByRole("textbox", { name: "Target Language" }) as HTMLInputElement;
    expect([target.tagName, target.placeholder, target.maxLength]).toEqual(["INPUT", "e.g. French", 64]);
    expect(screen.getByRole("textbox", { name: "Source Language (optional)" }).tagName).toBe("INPUT");

    await userEvent.click(screen.getByRole("radio", { name: "extract" }));
    const schema = screen.getByRole("textbox", { name: "Schema — JSON" }) as HTMLTextAreaElement;
    expect(JSON.parse(schema.value)).toEqual({ type: "object", properties: { name: { type: "string" } }, required: ["name"] });

    await userEvent.click(screen.getByRole("radio", { name: "chat" }));
    expect(screen.queryByLabelText(/Text to/)).toBeNull(); // chat takes messages, not a text
    expect(screen.getByRole("textbox", { name: "Messages — JSON" }).tagName).toBe("TEXTAREA");
    const temperature = screen.getByRole("spinbutton", { name: "Temperature (optional)" }) as HTMLInputElement;
    expect([temperature.min, temperature.max, temperature.step]).toEqual(["0", "2", "any"]);
    const maxTokens = screen.getByRole("spinbutton", { name: "Max Tokens (optional)" }) as HTMLInputElement;
    expect([maxTokens.min, maxTokens.max, maxTokens.step]).toEqual(["1", "", "1"]);
    const format = screen.getByRole("textbox", { name: "Response Format (optional) — JSON" }) as HTMLTextAreaElement;
    expect([format.value, JSON.parse(format.placeholder)]).toEqual(["", { type: "json_object" }]);
    expect(screen.getByRole("textbox", { name: "Model (optional)" }).tagName).toBe("INPUT");
  });

  it("sends the fields filled in, leaves the empty optional ones out, and keeps the text across types", async () => {
    const calls = await openSubmit(ONLINE, "translate", (call) => (call.method === "POST" ? accepted("translate") : undefined));
    await userEvent.type(screen.getByLabelText(/Text to translate/), "Bonjour tout le monde.");
    await userEvent.type(screen.getByRole("textbox", { name: "Target Language" }), "English");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    await waitFor(() => expect(posts(calls)).toHaveLength(1));
    expect(posts(calls)[0]).toMatchObject({ path: "/api/v1/tasks/translate/", body: { content: "Bonjour tout le monde.", target_language: "English" } });
    // The priority is sent too: the default, 5, when none was chosen.
    expect(Object.keys(posts(calls)[0].body as object)).toEqual(["content", "target_language", "priority"]);
    expect((posts(calls)[0].body as { priority: number }).priority).toBe(5);
    expect(await screen.findByRole("link", { name: "t-new" })).toBeTruthy();

    await userEvent.click(screen.getByRole("radio", { name: "summarize" }));
    expect((screen.getByLabelText(/Text to summarize/) as HTMLTextAreaElement).value).toBe("Bonjour tout le monde.");
  });

  it("builds a chat body: messages and numbers parsed, the empty optional fields left out", async () => {
    const calls = await openSubmit(ONLINE, "chat", (call) => (call.method === "POST" ? accepted("chat") : undefined));
    const messages = screen.getByRole("textbox", { name: "Messages — JSON" });
    await userEvent.clear(messages);
    await userEvent.click(messages);
    await userEvent.paste('[{"role": "user", "content": "Say hi"}]');
    await userEvent.type(screen.getByRole("spinbutton", { name: "Temperature (optional)" }), "0.7");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    await waitFor(() => expect(posts(calls)).toHaveLength(1));
    expect(posts(calls)[0]).toMatchObject({ path: "/api/v1/tasks/chat/" });
    expect(posts(calls)[0].body).toEqual({ messages: [{ role: "user", content: "Say hi" }], temperature: 0.7, priority: 5 });
  });

  it("checks a JSON field as it is typed and sends nothing while it is not the JSON wanted", async () => {
    const calls = await openSubmit(ONLINE, "extract", (call) => (call.method === "POST" ? accepted("extract") : undefined));
    await userEvent.type(screen.getByLabelText(/Text to extract/), "Ada Lovelace, born 1815.");
    const schema = screen.getByRole("textbox", { name: "Schema — JSON" });
    await userEvent.clear(schema);
    await userEvent.click(schema);
    await userEvent.paste('{"type": "object", ');
    expect(screen.getByTestId("problem-schema").textContent).toMatch(/^Not valid JSON/);
    expect(schema.getAttribute("aria-invalid")).toBe("true");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    await userEvent.clear(schema);
    await userEvent.click(schema);
    await userEvent.paste("[1, 2]");
    expect(screen.getByTestId("problem-schema").textContent).toBe("Must be a JSON object: {…}");
    expect(posts(calls)).toHaveLength(0);

    await userEvent.clear(schema);
    await userEvent.click(schema);
    await userEvent.paste('{"type": "object", "properties": {"born": {"type": "integer"}}}');
    expect(screen.queryByTestId("problem-schema")).toBeNull();
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    await waitFor(() => expect(posts(calls)).toHaveLength(1));
    expect(posts(calls)[0].body).toEqual({
      content: "Ada Lovelace, born 1815.",
      schema: { type: "object", properties: { born: { type: "integer" } } },
      priority: 5,
    });
  });

  it("shows a type that needs an LLM disabled, with the reason, while the offline provider runs", async () => {
    await openSubmit(OFFLINE, null);
    for (const name of ["translate", "extract", "chat"]) {
      expect((screen.getByRole("radio", { name }) as HTMLInputElement).disabled).toBe(true);
      expect(screen.getByTestId(`reason-${name}`).textContent).toContain("OPENROUTER_API_KEY");
    }
    const summarize = screen.getByRole("radio", { name: "summarize" }) as HTMLInputElement;
    expect([summarize.disabled, summarize.checked]).toEqual([false, true]);
    expect(screen.queryByTestId("reason-summarize")).toBeNull();
    cleanup();

    // An address naming an unavailable type shows its form, disabled, and no way to submit it.
    await openSubmit(OFFLINE, "extract");
    expect(screen.getByLabelText(/Text to extract/).matches(":disabled")).toBe(true); // its fieldset is
    expect((screen.getByRole("button", { name: "Submit" }) as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByTestId("unavailable").textContent).toMatch(/^Task type 'extract' needs an LLM provider; .* Set OPENROUTER_API_KEY/);
  });

  it("shows the server's 422 next to the fields it names, and its message", async () => {
    const refusal = {
      status: 422,
      body: {
        code: "validation_error",
        message: "body.messages.0.content: Value error, must not be blank; body.max_tokens: at most CHAT_MAX_TOKENS (4096)",
        detail: [
          { type: "value_error", loc: ["body", "messages", 0, "content"], msg: "Value error, must not be blank" },
          { type: "value_error", loc: ["body", "max_tokens"], msg: "at most CHAT_MAX_TOKENS (4096)" },
        ],
      },
    };
    const calls = await openSubmit(ONLINE, "chat", (call) => (call.method === "POST" ? refusal : undefined));
    await userEvent.type(screen.getByRole("spinbutton", { name: "Max Tokens (optional)" }), "99999");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    expect((await screen.findByTestId("problem-max_tokens")).textContent).toBe("at most CHAT_MAX_TOKENS (4096)");
    expect(screen.getByTestId("problem-messages").textContent).toBe("0.content: Value error, must not be blank");
    expect(screen.getByRole("spinbutton", { name: /Max Tokens/ }).getAttribute("aria-invalid")).toBe("true");
    const alert = screen.getAllByRole("alert").find((a) => a.textContent?.includes("422 validation_error"));
    expect(alert?.textContent).toContain("body.max_tokens: at most CHAT_MAX_TOKENS (4096)");
    expect(posts(calls)[0].body).toEqual({ messages: [{ role: "user", content: "Name three prime numbers." }], max_tokens: 99999, priority: 5 });
    // Editing a field clears its refusal; the other stays until the next submit.
    await userEvent.type(screen.getByRole("spinbutton", { name: /Max Tokens/ }), "{backspace}");
    await waitFor(() => expect(screen.queryByTestId("problem-max_tokens")).toBeNull());
  });

  it("offers a priority 0–9 (5 first), sends the one chosen, and keeps it across types", async () => {
    const calls = await openSubmit(ONLINE, "summarize", (call) => (call.method === "POST" ? accepted("summarize") : undefined));
    // The priority is the page's own control: no type's schema has it.
    expect(OFFLINE.every((t) => !("priority" in (t.input_schema.properties ?? {})))).toBe(true);
    const priority = screen.getByRole("combobox", { name: "Priority" }) as HTMLSelectElement;
    expect(priority.value).toBe("5");
    expect([...priority.options].map((o) => [o.value, o.textContent])).toEqual([
      ["0", "0 (runs first)"], ["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"],
      ["5", "5 (default)"], ["6", "6"], ["7", "7"], ["8", "8"], ["9", "9 (runs last)"],
    ]);
    expect(screen.getByText("0 runs first, 9 last; 5 is the default.").id).toBe(priority.getAttribute("aria-describedby"));
    await userEvent.selectOptions(priority, "0");
    await userEvent.type(screen.getByLabelText(/Text to summarize/), "Urgent text.");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    await waitFor(() => expect(posts(calls)).toHaveLength(1));
    expect(posts(calls)[0]).toMatchObject({ path: "/api/v1/tasks/summarize/" });
    expect(posts(calls)[0].body).toEqual({ content: "Urgent text.", priority: 0 });

    await userEvent.click(screen.getByRole("radio", { name: "translate" }));
    expect((screen.getByRole("combobox", { name: "Priority" }) as HTMLSelectElement).value).toBe("0");
    await userEvent.selectOptions(screen.getByRole("combobox", { name: "Priority" }), "9");
    await userEvent.type(screen.getByRole("textbox", { name: "Target Language" }), "French");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    await waitFor(() => expect(posts(calls)).toHaveLength(2));
    expect(posts(calls)[1]).toMatchObject({ path: "/api/v1/tasks/translate/", body: { content: "Urgent text.", target_language: "French", priority: 9 } });
  });

  it("shows the server's 422 on the priority beside the control", async () => {
    const refusal = {
      status: 422,
      body: {
        code: "validation_error",
        message: "body.priority: Input should be less than or equal to 9",
        detail: [{ type: "less_than_equal", loc: ["body", "priority"], msg: "Input should be less than or equal to 9" }],
      },
    };
    const calls = await openSubmit(ONLINE, "summarize", (call) => (call.method === "POST" ? refusal : undefined));
    await userEvent.type(screen.getByLabelText(/Text to summarize/), "Some text.");
    await userEvent.selectOptions(screen.getByRole("combobox", { name: "Priority" }), "3");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    expect((await screen.findByTestId("problem-priority")).textContent).toBe("Input should be less than or equal to 9");
    const priority = screen.getByRole("combobox", { name: "Priority" });
    expect(priority.getAttribute("aria-invalid")).toBe("true");
    expect(priority.getAttribute("aria-describedby")).toBe("task-priority-hint task-priority-problem");
    expect(screen.getByTestId("problem-priority").closest("[data-field]")?.getAttribute("data-field")).toBe("priority");
    expect(screen.queryByTestId("problem-content")).toBeNull();
    expect(posts(calls)[0].body).toEqual({ content: "Some text.", priority: 3 });
    // Choosing another level clears the refusal.
    await userEvent.selectOptions(priority, "4");
    expect(screen.queryByTestId("problem-priority")).toBeNull();
    expect(priority.getAttribute("aria-invalid")).toBeNull();
  });

  it("shows a submit refused for want of a provider in the API's words", async () => {
    const message = "task type 'extract' needs an LLM provider; the offline provider runs because no OPENROUTER_API_KEY is set";
    await openSubmit(ONLINE, "extract", (call) =>
      call.method === "POST" ? { status: 422, body: { code: "provider_required", message } } : undefined,
    );
    await userEvent.type(screen.getByLabelText(/Text to extract/), "Some text.");
    await userEvent.click(screen.getByRole("button", { name: "Submit" }));
    const alert = await screen.findByText(message, { exact: false });
    expect(within(alert).getByText("(422 provider_required)")).toBeTruthy();
  });
});
