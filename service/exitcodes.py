"""The exit codes of `python main.py`, documented in `--help` and the README; scripts branch on them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # diagnose: healthy; check: every check passed (warnings allowed); run: stopped cleanly
    FAULT = 1  # diagnose: a fault was found on the workload
    USAGE = 2  # bad flags, bad configuration, object not found, or a fatal preflight problem
    UNREACHABLE = 3  # the API server did not answer or refused the credentials
    INTERNAL = 4  # a bug: run again with -v and report the traceback
    INTERRUPTED = 130  # Ctrl-C
