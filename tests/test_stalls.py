"""When a watch stream makes AMOS not ready (pure): not listed yet, or silent for several watch timeouts; a quiet
stream that restarts each timeout, and one the role may not list, are healthy."""

from __future__ import annotations

from monitors.stalls import STALL_AFTER_TIMEOUTS, StreamState, stream_problem

TIMEOUT = 300.0
POD_WATCH = "Pod watch (all namespaces)"


def state(silent_seconds: float, **fields: object) -> StreamState:
    return StreamState.model_validate({"stream": POD_WATCH, "listed": True, "silent_seconds": silent_seconds} | fields)


def test_a_quiet_watch_that_restarts_every_timeout_is_healthy() -> None:
    assert stream_problem(state(0.0), TIMEOUT) is None
    assert stream_problem(state(TIMEOUT + 30), TIMEOUT) is None  # one request ended late
    assert stream_problem(state(STALL_AFTER_TIMEOUTS * TIMEOUT), TIMEOUT) is None


def test_a_watch_silent_for_several_timeouts_has_stalled() -> None:
    problem = stream_problem(state(STALL_AFTER_TIMEOUTS * TIMEOUT + 1), TIMEOUT)
    assert problem == (
        f"{POD_WATCH}: stalled, no list, event or bookmark for 901 s (a healthy watch shows one every 300 s)"
    )


def test_a_stream_that_keeps_failing_to_list_again_names_its_error() -> None:
    problem = stream_problem(state(2000, failure="503 Service Unavailable"), TIMEOUT)
    assert problem is not None and problem.startswith(f"{POD_WATCH}: stalled")
    assert problem.endswith("; last error: 503 Service Unavailable")
    assert stream_problem(state(10, failure="503 Service Unavailable"), TIMEOUT) is None  # a blip, retried


def test_a_stream_not_listed_yet_is_not_ready_however_young() -> None:
    assert stream_problem(state(0.5, listed=False), TIMEOUT) == f"{POD_WATCH}: not listed yet"
    failing = stream_problem(state(0.5, listed=False, failure="ConnectTimeoutError: timed out"), TIMEOUT)
    assert failing == f"{POD_WATCH}: not listed yet; last error: ConnectTimeoutError: timed out"


def test_a_forbidden_stream_is_retried_slowly_not_stalled() -> None:
    assert stream_problem(state(10 * TIMEOUT, forbidden=True, failure="403 Forbidden"), TIMEOUT) is None
