"""Dict manifests where the kubernetes client's signatures name a model class.

Tests write Kubernetes objects as the JSON the API server sees; the client sends a dict body as it is,
but its typed signatures want the model classes. This keeps that one cast in one place.
"""

from __future__ import annotations

from typing import Any, cast


def as_body(body: dict[str, Any]) -> Any:
    """`body` unchanged, typed for any `create_*`/`replace_*` call of the client."""
    return cast(Any, body)
