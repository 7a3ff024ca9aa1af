"""PNG previews of the dashboards: the same panel queries on a simulated run, drawn with matplotlib.

    pip install matplotlib
    python -m dashboards.preview                  # -> dashboards/preview/<dashboard>.png

Grafana cannot run here, so this fills an embedded chDB store with ``dashboards/sample.py``
(30 one-minute panes, drift and a fairness regression from the middle on), runs every ClickHouse
panel query through ``dashboards/expand.py`` exactly as the tests do, and lays the panels out on
Grafana's 24-column grid. Prometheus panels show their query (they need a running service).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from dashboards.build import OUT as DASHBOARD_DIR
from dashboards.expand import Result, TimeRange, resolve_variables, run
from dashboards.sample import fill
from driftline.storage.store import Store

PREVIEW_DIR = Path(__file__).resolve().parent / "preview"
COLORS = {"green": "#56a64b", "red": "#e02f44", "orange": "#ff9830"}
UNIT_HEIGHT_IN = 0.33  # one Grafana grid row (30 px) in inches
WIDTH_IN = 18.0


def thresholds(panel: dict[str, Any]) -> list[tuple[float, str]]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [(s["value"], s["color"]) for s in steps if s["value"] is not None]


def draw_timeseries(ax: Axes, panel: dict[str, Any], result: Result) -> None:
    series: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    label_col = next((c for c, t in zip(result.columns, result.types, strict=True) if t == "String"), None)
    for row in result.rows:
        values = dict(zip(result.columns, row, strict=True))
        if label_col:
            series[values[label_col]].append((values["time"], values["value"]))
        else:
            for col in result.columns[1:]:
                series[col].append((values["time"], values[col]))
    for name, points in sorted(series.items()):
        drawn = [(x, y) for x, y in points if y is not None]  # a null is no point, as in Grafana
        if not drawn:
            continue
        xs, ys = zip(*drawn, strict=True)
        ax.plot(xs, ys, linewidth=1.2, label=name)
    custom = panel["fieldConfig"]["defaults"]["custom"]
    if custom.get("thresholdsStyle", {}).get("mode") == "line":
        for value, color in thresholds(panel):
            ax.axhline(value, color=COLORS.get(color, color), linestyle="--", linewidth=1)
    if "min" in panel["fieldConfig"]["defaults"]:
        ax.set_ylim(bottom=panel["fieldConfig"]["defaults"]["min"])
    if "max" in panel["fieldConfig"]["defaults"]:
        ax.set_ylim(top=panel["fieldConfig"]["defaults"]["max"])
    if not series:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="#888", transform=ax.transAxes)
    ax.legend(fontsize=6, ncol=max(1, len(series) // 6), loc="upper left", frameon=False)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def draw_heatmap(ax: Axes, result: Result) -> None:
    times = sorted(set(result.column("time")))
    features = sorted(set(result.column("feature")))
    grid = [[0.0] * len(times) for _ in features]
    for t, f, v in result.rows:
        grid[features.index(f)][times.index(t)] = v
    image = ax.imshow(
        grid,
        aspect="auto",
        cmap="Oranges",
        interpolation="nearest",
        vmin=0,
        extent=(mdates.date2num(times[0]), mdates.date2num(times[-1]), len(features) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(features)), features, fontsize=6)
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.tick_params(axis="x", labelsize=7)
    plt.colorbar(image, ax=ax, fraction=0.02, pad=0.01).ax.tick_params(labelsize=7)


def draw_stat(ax: Axes, panel: dict[str, Any], result: Result) -> None:
    value = result.rows[0][0] if result.rows else None
    color = "#3d71d9"
    for limit, c in thresholds(panel):
        if value is not None and value >= limit:
            color = COLORS.get(c, c)
    if not thresholds(panel):
        color = COLORS["green"]
    ax.set_facecolor(color)
    ax.text(
        0.5,
        0.45,
        f"{value:,}" if isinstance(value, int) else str(value),
        ha="center",
        va="center",
        fontsize=22,
        color="white",
        weight="bold",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def draw_table(ax: Axes, result: Result, max_rows: int = 12) -> None:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if hasattr(v, "strftime"):
            return v.strftime("%H:%M:%S")
        return f"{v:.4g}" if isinstance(v, float) else str(v)[:28]

    rows = [[cell(v) for v in row] for row in result.rows[:max_rows]] or [
        ["(no rows)"] + [""] * (len(result.columns) - 1)
    ]
    table = ax.table(cellText=rows, colLabels=list(result.columns), loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.scale(1, 1.1)
    ax.axis("off")


def draw_prometheus(ax: Axes, panel: dict[str, Any]) -> None:
    exprs = "\n".join(t["expr"] for t in panel["targets"]).replace("$", r"\$")  # not mathtext
    ax.text(
        0.02,
        0.5,
        f"Prometheus (needs the running service):\n{exprs}",
        fontsize=6.5,
        va="center",
        family="monospace",
        color="#555",
        transform=ax.transAxes,
        wrap=True,
    )
    ax.set_facecolor("#f4f5f5")
    ax.set_xticks([])
    ax.set_yticks([])


def render(store: Store, dash: dict[str, Any], span: TimeRange, path: Path) -> None:
    values = resolve_variables(store, dash, span)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
    header_in = 0.6
    fig = plt.figure(figsize=(WIDTH_IN, rows * UNIT_HEIGHT_IN + header_in))
    height_in = fig.get_figheight()
    chosen = ", ".join(f"{k}={v[0] if len(v) == 1 else 'All'}" for k, v in values.items())
    fig.suptitle(
        f"{dash['title']}    {chosen}", x=0.01, y=1 - 0.15 / height_in, ha="left", fontsize=12, weight="bold"
    )
    for panel in dash["panels"]:
        g = panel["gridPos"]
        if panel["type"] == "row":  # a header across the grid
            fig.text(
                0.01,
                1 - (header_in + (g["y"] + 0.7) * UNIT_HEIGHT_IN) / height_in,
                panel["title"],
                fontsize=11,
                weight="bold",
            )
            continue
        # Grafana's grid in inches, then padding for the title above and the tick labels around.
        axes = panel["type"] in ("timeseries", "heatmap") and panel["datasource"]["type"] != "prometheus"
        pad_left, pad_bottom = (1.1, 0.35) if axes else (0.15, 0.1)
        left = g["x"] / 24 * WIDTH_IN + pad_left
        width = g["w"] / 24 * WIDTH_IN - pad_left - 0.15
        top = header_in + g["y"] * UNIT_HEIGHT_IN + 0.3
        height = g["h"] * UNIT_HEIGHT_IN - 0.3 - pad_bottom
        ax = fig.add_axes(
            (left / WIDTH_IN, 1 - (top + height) / height_in, width / WIDTH_IN, height / height_in)
        )
        ax.set_title(panel["title"], fontsize=9, loc="left")
        if panel["datasource"]["type"] == "prometheus":
            draw_prometheus(ax, panel)
            continue
        result = run(store, panel["targets"][0]["rawSql"], values, span)
        match panel["type"]:
            case "timeseries":
                draw_timeseries(ax, panel, result)
            case "heatmap":
                draw_heatmap(ax, result)
            case "stat":
                draw_stat(ax, panel, result)
            case "table":
                draw_table(ax, result)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(PREVIEW_DIR), help="directory for the PNG files")
    parser.add_argument("--store", default=None, help="chDB directory to fill (default: a temporary one)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"chdb://{args.store or Path(tmp) / 'db'}")
        try:
            sample = fill(store)
            span = TimeRange(sample.start_ms - 2 * 60_000, int(time.time() * 1000) + 60_000)
            for path in sorted(DASHBOARD_DIR.glob("*.json")):
                target = out / f"{path.stem}.png"
                render(store, json.loads(path.read_text()), span, target)
                print(f"wrote {target}")
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
