"""The one envelope every tool returns: a status to branch on, the data, or an error that names the failed API call."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, computed_field

MAX_ERROR_CHARS = 400
REFUSED_TEXT = "refused by policy: "  # how a refusal reads to a model; code branches on `ToolStatus.REFUSED`


class ToolStatus(StrEnum):
    OK = "ok"
    NO_DATA = "no_data"  # the call worked and found nothing useful (no log lines, no events)
    REFUSED = "refused"  # a rule said no before anything was sent; final, not worth a retry
    CONFLICT = "conflict"  # someone else changed the object after AMOS read it; not overwritten
    ERROR = "error"  # the call failed (the API server said no, or it could not be reached)


class ToolResult(BaseModel):
    status: ToolStatus
    data: Any = None
    error: str | None = None
    truncated: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Shown to models next to `status`: the call did what it was asked (found something, or nothing)."""
        return self.status in {ToolStatus.OK, ToolStatus.NO_DATA}

    @classmethod
    def success(cls, data: Any = None, *, truncated: bool = False) -> ToolResult:
        return cls(status=ToolStatus.OK, data=data, truncated=truncated)

    @classmethod
    def failure(cls, error: str, status: ToolStatus = ToolStatus.ERROR) -> ToolResult:
        return cls(status=status, error=error)

    @classmethod
    def refused(cls, reason: str) -> ToolResult:
        return cls(status=ToolStatus.REFUSED, error=REFUSED_TEXT + reason)


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
