"""Raw measurements -> figures: Prometheus text, histogram quantiles, percentiles, CPU time."""

from __future__ import annotations

import math
import os

import numpy as np


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> ``{(sample name, sorted label pairs): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def histogram_summary(samples: dict[tuple[str, tuple], float], name: str) -> dict:
    """Count, mean and p50/p95/p99 (linear within buckets, as PromQL's histogram_quantile)."""
    buckets = sorted((float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
                     if n == f"{name}_bucket")
    count = samples.get((f"{name}_count", ()), 0.0)
    total = samples.get((f"{name}_sum", ()), 0.0)
    out = {"count": int(count), "mean_s": sig(total / count) if count else None}
    for q in (0.5, 0.95, 0.99):
        out[f"p{round(q * 100)}_s"] = sig(bucket_quantile(q, buckets)) if count else None
    return out


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Quantile ``q`` of a histogram given as sorted (upper bound, cumulative count) pairs."""
    total = buckets[-1][1]
    rank = q * total
    lo_bound, lo_count = 0.0, 0.0
    for bound, cum in buckets:
        if cum >= rank:
            if math.isinf(bound):
                return lo_bound
            if cum == lo_count:
                return bound
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (cum - lo_count)
        lo_bound, lo_count = bound, cum
    return lo_bound


def own_cpu() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def crc32c_impl() -> str:
    """Which CRC-32C kafka-python uses for record batches (the C one needs ``pip install crc32c``)."""
    try:
        from kafka.record import util
    except ImportError:
        return "unknown"
    return "c" if getattr(util, "crc32c_c", None) else "pure-python"


def percentiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    p = np.percentile(np.asarray(values), [50, 95, 99])
    return sig(p[0]), sig(p[1]), sig(p[2])


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def sig(x: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (figures, not noise)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return round(float(x), max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))
