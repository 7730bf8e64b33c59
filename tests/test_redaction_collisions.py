"""A Secret value that equals a name AMOS needs never blinds it; values stay in their namespace.

The first redactor kept every value process-wide and matched it anywhere: a Secret value `shop`
turned the next incident into `Deployment/web in namespace [REDACTED]`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from agents.context import IncidentContext
from agents.instructions import render_diagnosis
from core.config import Settings
from core.models import Evidence, FaultKind, Incident, ObjectRef
from core.redaction import REDACTED, Redactor

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def redactor_knowing(*values: str, namespace: str = "shop") -> Redactor:
    redactor = Redactor()
    redactor.add_secret_data({f"k{i}": b64(value) for i, value in enumerate(values)}, namespace=namespace, secret="s")
    return redactor.scope(namespace)


def incident(namespace: str = "shop", name: str = "web", reason: str = "OOMKilled") -> Incident:
    return Incident(
        id="inc-1",
        fingerprint="f" * 16,
        kind=FaultKind.OOM_KILLED,
        workload=ObjectRef(kind="Deployment", namespace=namespace, name=name),
        first_seen=NOW,
        last_seen=NOW,
        evidence=[Evidence(reason=reason, message=f"container web was {reason}", container="web")],
    )


@pytest.mark.parametrize("value", ["shop", "orders", "payment"])
def test_a_short_secret_value_is_not_learned(value: str) -> None:
    redactor = redactor_knowing(value)

    assert redactor.redact_text(f"Deployment/web in namespace shop serves {value}") == (
        f"Deployment/web in namespace shop serves {value}"
    )


@pytest.mark.parametrize(
    "value", ["OOMKilled", "CrashLoopBackOff", "ImagePullBackOff", "Deployment", "kube-system", "ReplicaSet"]
)
def test_kubernetes_vocabulary_is_never_redacted(value: str) -> None:
    text = f"Deployment/web -n shop: {value}; reason {value}"

    assert redactor_knowing(value).redact_text(text) == text


def test_structured_identifiers_survive_a_colliding_secret_value() -> None:
    redactor = redactor_knowing("payments-web", "payments", "OOMKilled", "registry.internal")
    report = incident(namespace="payments", name="payments-web")

    redacted = redactor.redact(report)

    assert redacted.workload == report.workload
    assert redacted.evidence[0].reason == "OOMKilled"
    assert redacted.evidence[0].message == "container web was OOMKilled"


def test_image_references_and_names_in_text_survive_a_colliding_secret_value() -> None:
    redactor = redactor_knowing("registry.internal", "payments", "web-frontend")
    text = (
        'Failed to pull image "registry.internal/shop/web:v2"; namespace payments; '
        "Deployment/web-frontend -n payments; pod web-frontend restarted"
    )

    assert redactor.redact_text(text) == text


def test_the_prompt_names_the_workload_even_when_a_secret_holds_its_namespace() -> None:
    redactor = redactor_knowing("payments", "checkout-api", "OOMKilled")
    context = IncidentContext(
        incident=incident(namespace="payments", name="checkout-api"),
        fault="OOMKilled on Deployment/checkout-api -n payments",
        evidence=["OOMKilled: container web was OOMKilled"],
    )

    prompt = render_diagnosis(redactor.redact(context), Settings())

    assert "Workload: Deployment/checkout-api in namespace payments" in prompt
    assert "OOMKilled on Deployment/checkout-api -n payments" in prompt
    assert prompt == render_diagnosis(context, Settings())


def test_a_value_learned_in_one_namespace_is_not_looked_for_in_another() -> None:
    store = Redactor()
    store.add_secret_data({"password": b64("Zq9kP2mW7vX4")}, namespace="payments", secret="db")

    assert store.scope("payments").redact_text("pw Zq9kP2mW7vX4") == f"pw {REDACTED}"
    assert store.scope("shop").redact_text("pw Zq9kP2mW7vX4") == "pw Zq9kP2mW7vX4"
    assert store.redact_text("pw Zq9kP2mW7vX4") == f"pw {REDACTED}"  # unscoped text (a mail): every value


def test_a_scoped_view_learns_into_its_namespace_and_values_given_by_callers_stay_global() -> None:
    store = Redactor(["smtp-Pa55word"])
    store.scope("payments").add_secret_data({"password": b64("Zq9kP2mW7vX4")})

    assert store.scope("shop").redact_text("smtp-Pa55word Zq9kP2mW7vX4") == f"{REDACTED} Zq9kP2mW7vX4"
    assert store.scope("payments").redact_text("Zq9kP2mW7vX4") == REDACTED


def test_a_protected_identifier_is_kept_in_free_text() -> None:
    redactor = redactor_knowing("checkout-orders")
    redactor.protect(["checkout-orders"])

    assert redactor.redact_text("queue checkout-orders is full") == "queue checkout-orders is full"
