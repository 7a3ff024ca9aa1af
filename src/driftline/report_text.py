"""Readable terminal rendering of a drift report (the JSON shape of ``drift_report``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table to 80 columns
            console = Console(width=160)
    console.print(
        f"reference: {report['n_reference']} rows   current: {report['n_current']} rows   "
        f"drifted: {len(report['drifted_features'])}/{len(report['features'])} features"
    )
    t = Table(title="feature drift")
    for col in ("feature", "kind", "n", "null rate", "PSI", "KS D", "KS p (BH)", "JS", "W1/σ", "drift"):
        t.add_column(col, justify="left" if col in ("feature", "kind") else "right")
    for name, f in report["features"].items():
        test = f.get("ks") or f.get("chi2") or {}
        t.add_row(
            name,
            f["kind"],
            str(f["n"]),
            _fmt(f["null_rate"], 3),
            _fmt(f["psi"]),
            _fmt(f["ks"]["statistic"]) if f.get("ks") else "-",
            _fmt(test.get("p_value_adjusted"), 3),
            _fmt(f["js"]),
            _fmt(f.get("wasserstein")),
            "[bold red]DRIFT[/]" if f["drift"] else "ok",
        )
    console.print(t)
    if report.get("latency"):
        lat = report["latency"]
        console.print(
            "latency ms: "
            + "  ".join(f"{k}={_fmt(lat[k], 4)}" for k in ("p50", "p90", "p95", "p99", "max", "mean"))
        )
    for attr, fair in report.get("fairness", {}).items():
        ft = Table(title=f"fairness by {attr}")
        for col in ("group", "n", "positive rate", "TPR", "compared"):
            ft.add_column(col)
        for g, row in fair["groups"].items():
            ft.add_row(
                g,
                str(row["n"]),
                _fmt(row["positive_rate"], 3),
                _fmt(row["tpr"], 3),
                "no (small)" if row["excluded"] else "yes",
            )
        console.print(ft)
        console.print(
            f"  demographic parity difference {_fmt(fair['demographic_parity_difference'], 3)}   "
            f"disparate impact {_fmt(fair['disparate_impact'], 3)}   "
            f"equal opportunity difference {_fmt(fair['equal_opportunity_difference'], 3)}"
        )
