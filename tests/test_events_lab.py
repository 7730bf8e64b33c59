"""AMOS's Events on the lab: a keyed Event is written once however often it is recorded; others each time."""

from __future__ import annotations

import pytest
from kubernetes import client

from core.models import ObjectRef
from orchestrator.events import EventRecorder

pytestmark = pytest.mark.lab


def amos_events(api: client.ApiClient, namespace: str, reason: str) -> list[client.CoreV1Event]:
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"reason={reason}").items
    return [e for e in events if e.reporting_component == "amos"]


def test_an_event_recorded_again_under_its_key_is_written_once(api_client: client.ApiClient, namespace: str) -> None:
    recorder = EventRecorder(api_client)
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    assert recorder.record(web, "Fixed", "incident 1: fixed", key="report-1")
    assert recorder.record(web, "Fixed", "incident 1: fixed", key="report-1")  # a resumed step: already there
    assert recorder.record(web, "Fixed", "incident 2: fixed", key="report-2")
    assert sorted(str(e.message) for e in amos_events(api_client, namespace, "Fixed")) == [
        "incident 1: fixed",
        "incident 2: fixed",
    ]


def test_events_without_a_key_are_each_written(api_client: client.ApiClient, namespace: str) -> None:
    recorder = EventRecorder(api_client)
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    assert recorder.record(web, "Remediating", "attempt 1")
    assert recorder.record(web, "Remediating", "attempt 1")
    assert len(amos_events(api_client, namespace, "Remediating")) == 2


def test_an_event_that_cannot_be_written_is_false_not_an_error(api_client: client.ApiClient) -> None:
    recorder = EventRecorder(api_client)
    missing = ObjectRef(kind="Deployment", namespace="no-such-namespace-amos", name="web")
    assert not recorder.record(missing, "Fixed", "incident 1: fixed", key="report-1")
