"""The task record and its one mapping to and from the Redis hash."""

from __future__ import annotations

from dataclasses import dataclass, fields

from core.keys import DEFAULT_PRIORITY
from core.states import State

_INT_FIELDS = frozenset(
    {"retry_count", "max_retries", "created_at", "updated_at", "started_at", "finished_at", "due_at"}
    | {"attempts", "progress", "prompt_tokens", "completion_tokens", "total_tokens", "priority"}
)


@dataclass
class Task:
    """One unit of work. Timestamps are epoch milliseconds; 0 means "not yet"."""

    id: str
    task_type: str
    content: str
    params: str = ""  # the type's other input fields, as a JSON object ("" = none)
    state: State = State.PENDING
    result: str = ""
    provider: str = ""
    retry_count: int = 0
    max_retries: int = 0
    last_error: str = ""
    error_type: str = ""
    created_at: int = 0
    updated_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    due_at: int = 0
    consumer: str = ""
    attempt: str = ""
    attempts: int = 0  # attempts started (claims), whatever became of them
    progress: int = 0  # 0-100, set by the running attempt; 100 once COMPLETED
    current_step: str = ""
    model: str = ""  # the model that answered, when the provider said
    prompt_tokens: int = 0  # token usage of the answering call; 0 = not reported
    completion_tokens: int = 0
    total_tokens: int = 0
    priority: int = DEFAULT_PRIORITY  # 0-9, lower runs first
    owner: str = ""  # id of the API key that submitted it ("" when the API runs without keys); never the key

    def to_hash(self) -> dict[str, str]:
        """Flat str→str mapping as stored in `task:{id}`."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))  # flat: no deep copy as in asdict
        return {k: (v.value if isinstance(v, State) else str(v)) for k, v in values}

    def new_hash(self) -> dict[str, str]:
        """What a new task stores: `to_hash` without the fields still at their default (most are
        for later states; `from_hash` fills them in), which would cost memory and Redis time on
        every submit; ALWAYS_STORED whatever their value."""
        return {k: v for k, v in self.to_hash().items() if k in ALWAYS_STORED or v != _DEFAULTS[k]}

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Task:
        """Inverse of `to_hash`; unknown fields are ignored so old records stay readable."""
        values: dict[str, object] = {k: v for k, v in raw.items() if k in _FIELD_NAMES}
        for name in _INT_FIELDS & values.keys():
            values[name] = int(str(values[name]) or 0)
        values["state"] = State(raw["state"])
        return cls(**values)  # type: ignore[arg-type]


_FIELD_NAMES = frozenset(f.name for f in fields(Task))
# Stored by every new task: the fields the scripts read as they are (create_task's first four,
# recover_task's retry counts) and those that say what the task is.
ALWAYS_STORED = frozenset({"id", "owner", "priority", "task_type", "state", "content", "retry_count", "max_retries"})
_DEFAULTS = {f.name: (f.default.value if isinstance(f.default, State) else str(f.default)) for f in fields(Task)}
