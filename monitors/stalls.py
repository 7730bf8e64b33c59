"""When a watch stream cannot be trusted: not listed yet, or stalled (silent for longer than a healthy one is).

A healthy stream shows a sign of life at least once per watch timeout, however quiet its resource: the API
server ends each watch request after its `timeoutSeconds` (bookmarks may come sooner) and the stream starts
the next one at once. A stream silent for several timeouts is stuck: on a connection that carries nothing
(a frozen API server, a dropped connection nobody noticed), inside its own handling, or failing to list
again. A stream the role may not list is retried slowly on purpose and named elsewhere, so it never stalls.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

STALL_AFTER_TIMEOUTS = 3  # silent for this many watch timeouts: stalled


class StreamState(BaseModel):
    """What a stream did last, as seen from outside it."""

    model_config = ConfigDict(frozen=True)

    stream: str  # "Pod watch (all namespaces)": the resource, for the reason line
    listed: bool  # it has listed once (or was refused)
    forbidden: bool = False
    silent_seconds: float  # since its last list, event, bookmark or watch request that ended cleanly
    failure: str | None = None  # its last error since then


def stream_problem(state: StreamState, watch_timeout_seconds: float) -> str | None:
    """The reason line for a stream that cannot be trusted now, None for a healthy one."""
    failing = "" if state.failure is None else f"; last error: {state.failure}"
    if not state.listed:
        return f"{state.stream}: not listed yet{failing}"
    if state.forbidden or state.silent_seconds <= STALL_AFTER_TIMEOUTS * watch_timeout_seconds:
        return None
    return (
        f"{state.stream}: stalled, no list, event or bookmark for {state.silent_seconds:.0f} s "
        f"(a healthy watch shows one every {watch_timeout_seconds:g} s){failing}"
    )
