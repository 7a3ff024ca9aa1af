"""Readable terminal rendering of a drift report (the JSON shape of ``drift_report``) and of alerts."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# p-values are Benjamini-Hochberg adjusted: KS for numeric features, chi-square for categorical ones
_FEATURE_COLUMNS = (
    "feature",
    "kind",
    "n",
    "null rate",
    "type errors",
    "PSI",
    "KS D",
    "KS p (BH)",
    "chi2 p (BH)",
    "JS",
    "W1/σ",
    "drift",
)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def stdout_console() -> Console:
    """The terminal as it is; piped or captured, rich would wrap every line at 80 columns: do not."""
    console = Console()
    return console if console.is_terminal else Console(width=200, soft_wrap=True)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or stdout_console()
    console.print(
        f"reference: {report['n_reference']} rows   current: {report['n_current']} rows   "
        f"drifted: {len(report['drifted_features'])}/{len(report['features'])} features"
    )
    t = Table(title="feature drift")
    for col in _FEATURE_COLUMNS:
        t.add_column(col, justify="left" if col in ("feature", "kind") else "right")
    outputs = {f"[bold]{role}[/]": report[role] for role in ("prediction", "label") if report.get(role)}
    for name, f in [*report["features"].items(), *outputs.items()]:
        if f.get("role") == "segment":
            name = f"{name} (segment mix)"
        ks, chi2 = f.get("ks") or {}, f.get("chi2") or {}
        errors = f.get("type_errors", 0)
        t.add_row(
            name,
            f["kind"],
            str(f["n"]),
            _fmt(f["null_rate"], 3),
            f"[bold yellow]{errors}[/]" if errors else "0",
            _fmt(f["psi"]),
            _fmt(ks.get("statistic")),
            _fmt(ks.get("p_value_adjusted"), 3),
            _fmt(chi2.get("p_value_adjusted"), 3),
            _fmt(f["js"]),
            _fmt(f.get("wasserstein")),
            "[bold red]DRIFT[/]" if f["drift"] else "ok",
        )
    console.print(t)
    from driftline.detectors.profile import format_movers  # numpy and numba: only when reporting

    for name, f in [*report["features"].items(), *outputs.items()]:
        if f.get("explain"):
            console.print(f"  top movers of {name}: {escape(format_movers(f['explain']))}", highlight=False)
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

    for attr, by_value in report.get("slices", {}).items():
        print_slices(attr, by_value, console)


def print_slices(attribute: str, slices: dict[str, dict[str, Any]], console: Console) -> None:
    """One row per slice of an attribute: support, verdict, prediction PSI, model quality."""
    tasks = [s["performance"]["task"] for s in slices.values() if s.get("performance")]
    metric = "rmse" if tasks and tasks[0] == "regression" else "accuracy"
    t = Table(title=f"slices by {attribute}")
    numbers = ("n ref", "n cur", "prediction PSI", f"{metric} ref → cur")
    for col in ("value", *numbers[:2], "judged", "drifted features", *numbers[2:]):
        t.add_column(col, justify="right" if col in numbers else "left")
    for value, s in slices.items():
        drifted = s["drifted_features"]
        shown = ", ".join(drifted[:4]) + (f" +{len(drifted) - 4}" if len(drifted) > 4 else "")
        prediction = s.get("prediction") or {}
        psi = _fmt(prediction.get("psi"))
        perf = s.get("performance") or {}
        ref, cur = perf.get("reference") or {}, perf.get("current") or {}
        t.add_row(
            value,
            str(s["n_reference"]),
            str(s["n_current"]),
            "yes" if s["judged"] else "no (small)",
            f"[bold red]{shown}[/]" if drifted else ("none" if s["judged"] else "-"),
            f"[bold red]{psi}[/]" if prediction.get("drift") else psi,
            f"{_fmt(ref.get(metric), 3)} → {_fmt(cur.get(metric), 3)}" if perf else "-",
        )
    console.print(t)


def print_alerts(history: list[dict[str, Any]], console: Console | None = None) -> None:
    """State transitions, then notifications given up, newest first (``AlertStore.alert_history``)."""
    console = console or stdout_console()
    transitions = [h for h in history if h["state"] != "dead"]
    dead = [h for h in history if h["state"] == "dead"]
    if transitions:
        t = Table(title="alert transitions")
        for col in ("at", "state", "status", "severity", "rule", "model", "feature", "metric"):
            t.add_column(col)
        for col in ("value", "threshold"):
            t.add_column(col, justify="right")
        for h in transitions:
            t.add_row(
                h["at"],
                h["state"],
                h["status"],
                h["severity"],
                h["rule"],
                h["model"],
                h["feature"] or "(model)",
                h["metric"],
                _fmt(h["value"]),
                f"{h['op']} {_fmt(h['threshold'])}",
            )
        console.print(t)
    if dead:
        d = Table(title="dead notifications (given up undelivered)")
        for col in ("at", "receiver", "status", "rule", "model", "feature", "attempts", "reason"):
            d.add_column(col, justify="right" if col == "attempts" else "left")
        for h in dead:
            d.add_row(
                h["at"],
                h["receiver"],
                h["status"],
                h["rule"],
                h["model"],
                h["feature"] or "(model)",
                str(h["attempts"]),
                h["reason"],
            )
        console.print(d)
