"""Figures every benchmark prints the same way: percentiles, a latency line, process resources, a target verdict."""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path
from typing import NamedTuple

MB_PER_MIB = 1.048576


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (not empty); `fraction` is 0..1."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no samples"
    return (
        f"{name}: n={len(values)} p50={percentile(values, 0.5):.2f}s p95={percentile(values, 0.95):.2f}s "
        f"max={max(values):.2f}s mean={statistics.fmean(values):.2f}s"
    )


def verdict(goal: str, met: bool, measured: str) -> str:
    return f"target {goal}: {'met' if met else 'MISSED'} ({measured})"


class Usage(NamedTuple):
    """One process's resources at one moment."""

    wall: float  # time.monotonic()
    cpu_seconds: float  # user + system, every thread
    rss_mib: float
    peak_rss_mib: float


def proc_status(pid: int | str = "self") -> dict[str, str]:
    """/proc/<pid>/status as a dict (empty when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: value.strip() for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def kib_field_mib(status: dict[str, str], field: str) -> float:
    """A `VmRSS: 1234 kB` field in MiB (NaN when missing)."""
    value = status.get(field)
    return int(value.split()[0]) / 1024 if value else float("nan")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` (every thread) from /proc/<pid>/stat; NaN when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def usage() -> Usage:
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    status = proc_status()
    return Usage(
        time.monotonic(),
        rusage.ru_utime + rusage.ru_stime,
        kib_field_mib(status, "VmRSS"),
        kib_field_mib(status, "VmHWM"),
    )


def cpu_share(before: Usage, after: Usage) -> float:
    """Share of one core used between two samples."""
    wall = after.wall - before.wall
    return (after.cpu_seconds - before.cpu_seconds) / wall if wall > 0 else 0.0


def window(name: str, before: Usage, after: Usage) -> str:
    cpu = after.cpu_seconds - before.cpu_seconds
    wall = after.wall - before.wall
    return (
        f"{name}: CPU {cpu:.1f} s over {wall:.0f} s ({cpu_share(before, after):.1%} of one core), "
        f"RSS {after.rss_mib:.0f} MiB (peak {after.peak_rss_mib:.0f} MiB)"
    )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"
