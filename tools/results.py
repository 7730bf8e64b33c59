"""The one envelope every tool returns: success with data, or an error that names the failed API call."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

MAX_ERROR_CHARS = 400


class ToolResult(BaseModel):
    ok: bool
    data: Any = None
    error: str | None = None
    truncated: bool = False

    @classmethod
    def failure(cls, error: str, data: Any = None) -> ToolResult:
        return cls(ok=False, error=error, data=data)


def api_status(error: BaseException) -> tuple[int | None, str]:
    """(HTTP status, "<status> <reason>: <message>") of a failed call, short enough for a model to read."""
    if isinstance(error, ApiException):
        message = ""
        if error.body:
            try:
                message = str(json.loads(error.body).get("message", ""))
            except (ValueError, AttributeError):
                message = str(error.body)
        text = f"{error.status} {error.reason}" + (f": {message}" if message else "")
        return error.status, text[:MAX_ERROR_CHARS]
    return None, f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
