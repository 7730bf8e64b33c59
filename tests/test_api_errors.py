"""A failed Kubernetes API call, reported where it failed (pure): the client's observer hears of it once; in the
service that is one log line without a traceback and one count by operation and status."""

from __future__ import annotations

import json
import logging

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from core import api_errors
from core.redaction import Redactor
from service.api_error_log import ApiErrorLog
from service.metrics import Metrics


class Client:
    """Stands for an ApiClient: the observer is attached to the object, whatever it is."""


def forbidden() -> ApiException:
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"message": 'configmaps is forbidden: User "amos" cannot list resource "configmaps"'})
    return error


def count(metrics: Metrics, operation: str, status: str) -> float:
    found = metrics.registry.get_sample_value("amos_api_errors_total", {"operation": operation, "status": status})
    return 0.0 if found is None else found


def test_the_observer_of_the_client_that_made_the_call_hears_of_it() -> None:
    heard: list[tuple[str, BaseException]] = []
    mine, other = Client(), Client()
    api_errors.attach(mine, lambda operation, error: heard.append((operation, error)))
    error = forbidden()
    api_errors.report(mine, "list_namespaced_config_map", error)
    api_errors.report(other, "list_namespaced_pod", error)  # no observer: nobody hears
    api_errors.report(None, "read_namespaced_lease", error)
    assert heard == [("list_namespaced_config_map", error)]


def test_a_failing_observer_never_replaces_the_callers_error(caplog: pytest.LogCaptureFixture) -> None:
    def broken(operation: str, error: BaseException) -> None:
        raise RuntimeError("observer bug")

    client = Client()
    api_errors.attach(client, broken)
    api_errors.report(client, "read_namespaced_lease", forbidden())
    assert "the API error observer failed on read_namespaced_lease" in caplog.text


def test_the_service_logs_one_line_without_traceback_and_counts_the_call(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    observe = ApiErrorLog(metrics, Redactor())
    with caplog.at_level(logging.DEBUG, logger="amos.kube"):
        observe("list_namespaced_config_map", forbidden())
        observe("watch_pod_for_all_namespaces", ProtocolError("Connection aborted."))
    first, second = caplog.records
    assert (first.levelno, first.exc_info) == (logging.WARNING, None)
    assert first.getMessage() == (
        "Kubernetes API call list_namespaced_config_map failed: 403 Forbidden: "
        'configmaps is forbidden: User "amos" cannot list resource "configmaps"'
    )
    assert second.levelno == logging.WARNING and "ProtocolError: Connection aborted." in second.getMessage()
    assert count(metrics, "list_namespaced_config_map", "403") == 1
    assert count(metrics, "watch_pod_for_all_namespaces", "none") == 1


def test_not_found_and_conflicts_are_counted_but_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    observe = ApiErrorLog(metrics, Redactor())
    with caplog.at_level(logging.DEBUG, logger="amos.kube"):
        observe("read_namespaced_config_map", ApiException(status=404, reason="Not Found"))
        observe("replace_namespaced_config_map", ApiException(status=409, reason="Conflict"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    assert count(metrics, "read_namespaced_config_map", "404") == 1
    assert count(metrics, "replace_namespaced_config_map", "409") == 1


def test_logs_of_a_container_not_started_are_an_answer_but_another_bad_request_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    observe = ApiErrorLog(metrics, Redactor())
    with caplog.at_level(logging.DEBUG, logger="amos.kube"):
        observe("read_namespaced_pod_log", ApiException(status=400, reason="Bad Request"))  # waiting to start
        observe("patch_namespaced_deployment", ApiException(status=400, reason="Bad Request"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING]
    assert count(metrics, "read_namespaced_pod_log", "400") == 1


def test_a_secret_value_in_an_error_message_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redactor = Redactor()
    redactor.add(["hunter2-very-secret"])
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = json.dumps({"message": "env DB_PASSWORD: hunter2-very-secret is invalid"})
    ApiErrorLog(Metrics(), redactor)("patch_namespaced_deployment", error)
    assert "hunter2-very-secret" not in caplog.text and "patch_namespaced_deployment failed: 422" in caplog.text
