"""How the benches print and summarise what they measure: one format and one percentile."""

from __future__ import annotations


def report(name: str, **figures: object) -> None:
    """One line of figures, `[bench] name: key=value ...`, printed at once."""
    print(f"\n[bench] {name}: " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0.5 the median, 0.95 the p95) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
