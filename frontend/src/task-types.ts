// The task types the API accepts (GET /api/v1/task-types), read once per page and again when the
// API key changes (the route needs a submit key when keys are configured).
import { useEffect } from "react";
import { getJson, KEY_CHANGED } from "./api";
import { usePoll } from "./components";
import type { TaskTypeInfo } from "./types";

export const TASK_TYPES_PATH = "/api/v1/task-types";

export function useTaskTypes() {
  const { data, error, reload } = usePoll(() => getJson<TaskTypeInfo[]>(TASK_TYPES_PATH), null);
  useEffect(() => {
    const again = () => void reload();
    window.addEventListener(KEY_CHANGED, again);
    return () => window.removeEventListener(KEY_CHANGED, again);
  }, [reload]);
  return { types: data, error };
}

/** Why a type cannot be submitted now, in short: the API's `available` is false only for a type
 * that needs an LLM while none is configured (a submit would get 422 provider_required). */
export function unavailableReason(type: TaskTypeInfo): string {
  return type.available ? "" : "Needs an LLM provider: set OPENROUTER_API_KEY (the offline provider runs now).";
}

/** The same at length, in the words of the API's provider_required refusal. */
export function unavailableDetail(type: TaskTypeInfo): string {
  if (type.available) return "";
  return (
    `Task type '${type.name}' needs an LLM provider; the offline provider runs because no OPENROUTER_API_KEY is set ` +
    "(or LLM_PROVIDER=offline). Set OPENROUTER_API_KEY, and OPENROUTER_BASE_URL for a server other than OpenRouter."
  );
}
