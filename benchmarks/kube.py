"""Calls to the kubernetes client with plain JSON both ways: benchmarks build manifests as dicts and read lists raw.

The client's model classes are slow to build at thousands of objects, and its typed signatures want
them; these helpers keep that one cast in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast


def raw_json(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`method(*args, **kwargs)` without the client's models: the answer as parsed JSON."""
    return json.loads(method(*args, _preload_content=False, **kwargs).data)


def manifest(body: dict[str, Any]) -> Any:
    """A dict manifest where the client's signature names a model class (the client sends dicts as they are)."""
    return cast(Any, body)
