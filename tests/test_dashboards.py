"""The Grafana dashboards and the Prometheus config, checked without Grafana or Prometheus.

* Every dashboard JSON is what ``dashboards/build.py`` generates (regenerate: ``python -m dashboards.build``).
* Schema essentials: unique uids and panel ids, a layout that fits, datasources that the
  provisioning defines, variables that exist and are quoted.
* Every ClickHouse query (panels and variables) runs against a chDB store filled by a short
  simulated run (``dashboards/sample.py``: a binary classifier and a regressor) after the plugin's
  macros and the variables are substituted as Grafana and grafana-clickhouse-datasource would;
  each returns rows with the declared columns, and the numbers say what the simulated run did
  (drift, model quality, fairness, alerts).
* Every PromQL expression parses (``promtool check rules``), names metrics and labels that
  ``driftline.telemetry`` defines, and returns series from synthetic data of every driftline metric
  (``promtool test rules``). The scrape config and the service's own rules pass
  ``promtool check config`` / ``check rules`` and their unit tests (``rules.test.yml``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from dashboards import build, expand
from dashboards.expand import Result, TimeRange, expand_macros, expand_variables, run
from dashboards.sample import (
    DRIFT_FEATURES,
    FAIRNESS_REGRESSION,
    REGRESSION_BIAS,
    SEGMENTS,
    Sample,
    fill,
    fill_regression,
)
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics import MetricWrapperBase
from sklearn import metrics as skm

from driftline import simulate, telemetry
from driftline.detectors.profile import ModelSketch, drift_report
from driftline.ingest.files import TableSpec, to_batch
from driftline.storage.store import Store

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "dashboards" / "grafana"
PROMETHEUS = ROOT / "dashboards" / "prometheus"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
BUILTIN_VARIABLES = {"__rate_interval", "__range", "__interval", "__interval_ms"}
PANEL_TYPES = {"timeseries", "stat", "table", "heatmap", "row"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def datasources() -> dict[str, str]:
    """uid -> type, from the Grafana provisioning."""
    out = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            out[ds["uid"]] = ds["type"]
    return out


def targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dash["panels"]:
        for target in panel.get("targets", []):  # a row header has none
            yield panel, target


def variable_refs(text: str) -> list[tuple[str, str | None]]:
    """(name, format) of every ``$name``, ``${name}``, ``${name:format}``, ``[[name]]``; macros excluded."""
    refs = []
    for m in re.finditer(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]", text):
        name = m.group(1) or m.group(3) or m.group(4)
        if name.startswith("__") and name not in BUILTIN_VARIABLES:
            continue  # a plugin macro ($__timeFilter, ...)
        refs.append((name, m.group(2)))
    return refs


# -- files and schema ---------------------------------------------------------------------------


def test_the_checked_in_json_is_what_the_generator_writes() -> None:
    built = build.build()
    assert [p.stem for p in DASHBOARD_FILES] == sorted(built)
    for path in DASHBOARD_FILES:
        assert path.read_text() == build.render(built[path.stem].json), (
            f"{path} is stale: run python -m dashboards.build"
        )
    assert build.main(["--check"]) == 0


def test_the_issue_s_four_dashboards_exist() -> None:
    titles = {load(p)["title"] for p in DASHBOARD_FILES}
    assert titles == {
        "driftline / Model overview",
        "driftline / Feature drift",
        "driftline / Fairness",
        "driftline / Pipeline health",
    }


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_schema_essentials(path: Path) -> None:
    dash = load(path)
    for key in ("uid", "title", "panels", "templating", "time", "schemaVersion"):
        assert key in dash, key
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    known = datasources()
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        assert panel["type"] in PANEL_TYPES
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        area = set(itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])))
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            # Expanded, so its panels follow it in the flat list (a collapsed row holds its panels
            # itself, out of reach of every check here); a header across the grid, no query.
            assert panel["collapsed"] is False and panel["panels"] == [], panel["title"]
            assert (g["x"], g["w"], g["h"]) == (0, 24, 1) and "targets" not in panel, panel["title"]
            continue
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for ds in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert known.get(ds["uid"]) == ds["type"], f"{panel['title']}: datasource {ds} is not provisioned"
        for t in panel["targets"]:
            if t["datasource"]["type"] == "grafana-clickhouse-datasource":
                assert t["editorType"] == "sql" and t["format"] in (0, 1) and t["rawSql"]
                assert t["pluginVersion"] == build.PLUGIN_VERSION
            else:
                assert t["expr"]
    for var in dash["templating"]["list"]:
        assert known.get(var["datasource"]["uid"]) == var["datasource"]["type"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_variables_referenced_exist_and_reach_sql_only_percent_encoded(path: Path) -> None:
    dash = load(path)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    texts = [t.get("rawSql") or t["expr"] for _, t in targets(dash)]
    defined_before: set[str] = set()
    for v in dash["templating"]["list"]:  # a variable's query may use the variables above it
        for name, _ in variable_refs(v["query"]):
            assert name in defined_before, f"variable {v['name']} uses ${name} before it is defined"
        defined_before.add(v["name"])
    for text in texts:
        for name, _ in variable_refs(text):
            assert name in variables or name in BUILTIN_VARIABLES, f"${name} is not a variable of {path.name}"
    for text in [*texts, *(v["query"] for v in variables.values())]:
        if "SELECT" not in text:
            continue
        # Percent-encoding leaves only [A-Za-z0-9._~%-], so nothing can end the literal around it.
        wrapped = re.findall(r"decodeURLComponent\('\$\{(\w+):percentencode\}'\)", text)
        used = [name for name, _ in variable_refs(text) if name in variables]
        assert sorted(wrapped) == sorted(used), f"a variable reaches the SQL otherwise: {text}"


def test_the_formats_are_grafana_s() -> None:
    """The expectations of Grafana's own formatRegistry tests."""
    assert (
        expand.grafana_format(["foo()bar BAZ", "test2"], "percentencode")
        == "%7Bfoo%28%29bar%20BAZ%2Ctest2%7D"
    )
    assert expand.grafana_format(["test", "test'2"], "singlequote") == "'test','test\\'2'"
    assert expand.grafana_format("test'value", "sqlstring") == "'test''value'"
    assert expand.grafana_format(["test", "test'value2"], "sqlstring") == "'test','test''value2'"
    assert expand.grafana_format("a!'()*~b", "percentencode") == "a%21%27%28%29%2A~b"


@given(value=st.text(max_size=40))
def test_percent_encoded_values_decode_to_themselves_in_clickhouse(filled: Filled, value: str) -> None:
    literal = expand.grafana_format(value, "percentencode")
    assert re.fullmatch(r"[A-Za-z0-9._~%-]*", literal)
    assert filled.store.select(f"SELECT decodeURLComponent('{literal}')")[2] == [(value,)]


def test_dashboard_queries_follow_the_conventions() -> None:
    for path in DASHBOARD_FILES:
        for panel, t in targets(load(path)):
            sql = t.get("rawSql", "")
            if "drift_metrics" in sql:
                assert "drift_metrics FINAL" in sql, f"{panel['title']}: read drift_metrics with FINAL"
            if "driftline." not in sql and sql:
                pytest.fail(f"{panel['title']}: qualify tables with the driftline database")
            if t.get("format") == build.TIME_SERIES and sql:
                assert "ORDER BY time" in sql, f"{panel['title']}: time series must be ordered by time"


# -- ClickHouse queries against a filled store --------------------------------------------------


@dataclass
class Filled:
    store: Store
    sample: Sample  # the binary classifier the variables pick first
    regression: Sample  # a second model: a regressor
    range: TimeRange

    def query(self, sql: str, values: expand.Values, interval_s: int = 60) -> Result:
        return run(self.store, sql, values, TimeRange(self.range.from_ms, self.range.to_ms, interval_s))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    store = Store.open(f"chdb://{tmp_path_factory.mktemp('dashboards') / 'db'}")
    try:
        sample = fill(store)
        regression = fill_regression(store, end_ms=sample.end_ms)
        # Grafana's "last hour" around the run; alerts and notifications are stamped with the wall clock.
        span = TimeRange(sample.start_ms - 5 * 60_000, int(time.time() * 1000) + 60_000)
        yield Filled(store, sample, regression, span)
    finally:
        store.close()


def resolve_variables(filled: Filled, dash: dict[str, Any]) -> expand.Values:
    return expand.resolve_variables(filled.store, dash, filled.range)


# Panels of one kind of model only, checked with the simulated model of that kind.
REGRESSOR_PANELS = {"Regressor error (MAE / RMSE)"}


def panel_values(filled: Filled, dash: dict[str, Any], title: str) -> expand.Values:
    """The variables as Grafana resolves them, the regressor chosen for a regressor's panel."""
    values = resolve_variables(filled, dash)
    if title in REGRESSOR_PANELS:
        values = {**values, "model": filled.regression.model, "version": filled.regression.version}
    return values


def test_macros_expand_as_the_plugin_does() -> None:
    r = TimeRange(1_767_225_600_123, 1_767_229_200_456, 30)
    sql = "WHERE $__timeFilter(at) AND x >= $__fromTime AND x <= $__toTime_ms GROUP BY $__interval_s"
    assert expand_macros(sql, r) == (
        "WHERE at >= toDateTime(1767225600) AND at <= toDateTime(1767229200) AND x >= toDateTime(1767225600) "
        "AND x <= fromUnixTimestamp64Milli(1767229200456) GROUP BY 30"
    )
    with pytest.raises(ValueError, match="macro"):
        expand_macros("$__timeGroup(at, 1m)", r)
    values: expand.Values = {"model": "churn", "feature": ["a", "b'c"]}
    assert expand_variables("m = '${model}' AND f IN (${feature:singlequote})", values) == (
        "m = 'churn' AND f IN ('a','b\\'c')"
    )
    assert (
        expand_variables("${model:percentencode} ${feature:percentencode}", values) == "churn %7Ba%2Cb%27c%7D"
    )
    with pytest.raises(ValueError, match="feature"):
        expand_variables("f = '${feature}'", values)


CLICKHOUSE_TARGETS = [
    pytest.param(path, panel["id"], t["refId"], id=f"{path.stem}:{panel['id']}{t['refId']}:{panel['title']}")
    for path in DASHBOARD_FILES
    for panel, t in targets(load(path))
    if t["datasource"]["type"] == "grafana-clickhouse-datasource"
]


def test_every_clickhouse_query_declares_its_columns() -> None:
    declared = {(b.json["uid"], pid, ref) for b in build.build().values() for pid, ref in b.columns}
    present = {(load(p)["uid"], pid, ref) for p, pid, ref in (c.values for c in CLICKHOUSE_TARGETS)}
    assert declared == present


@pytest.mark.parametrize(("path", "panel_id", "ref_id"), CLICKHOUSE_TARGETS)
def test_clickhouse_panel_query_returns_rows_with_its_columns(
    filled: Filled, path: Path, panel_id: int, ref_id: str
) -> None:
    dash = load(path)
    panel = next(p for p in dash["panels"] if p["id"] == panel_id)
    target = next(t for t in panel["targets"] if t["refId"] == ref_id)
    values = panel_values(filled, dash, panel["title"])
    expected = build.build()[path.stem].columns[(panel_id, ref_id)]
    for interval_s in (60, 300):
        result = filled.query(target["rawSql"], values, interval_s)
        assert result.columns == expected
        assert result.rows, f"{panel['title']} returned no rows"
        if target["format"] == build.TIME_SERIES:
            assert result.types[0].startswith("DateTime"), f"time column is {result.types[0]}"
            times = result.column("time")
            assert times == sorted(times)
            assert all(
                t.startswith(("Float", "Int", "UInt", "Nullable(Float")) or t == "String"
                for t in result.types[1:]
            )


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_variable_queries_return_the_simulated_model(filled: Filled, path: Path) -> None:
    dash = load(path)
    values = resolve_variables(filled, dash)
    s = filled.sample
    models = next((v for v in dash["templating"]["list"] if v["name"] == "model"), None)
    if models is not None:  # both simulated models are offered; the first is chosen
        assert [r[0] for r in filled.query(models["query"], {}).rows] == [s.model, filled.regression.model]
    expected = {
        "model": [s.model],
        "version": [s.version],
        "feature": sorted(s.features),
        "attribute": sorted(s.attributes),
    }
    for name, got in values.items():
        assert sorted([got] if isinstance(got, str) else got) == expected[name], name


HOSTILE = [
    "\\' OR 1=1 --",  # defeats singlequote: \' becomes \\' and the quote ends the literal
    "\\'' OR 1=1 --",  # defeats sqlstring the same way
    "x\\",  # a trailing backslash escapes the closing quote
    "churn' OR model_id != '",
    "'); DROP TABLE driftline.alerts; --",
    "{churn,v1}",
]


def clickhouse_queries() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in DASHBOARD_FILES:
        dash = load(path)
        for panel, t in targets(dash):
            if t["datasource"]["type"] == "grafana-clickhouse-datasource":
                yield f"{path.stem}: {panel['title']}", t["rawSql"], dash
        for v in dash["templating"]["list"]:
            yield f"{path.stem}: variable {v['name']}", v["query"], dash


def test_hostile_variable_values_only_select_nothing(filled: Filled) -> None:
    """A URL can set any value (?var-model=...): each query answers a hostile value exactly as it
    answers a name that does not exist, for every variable it uses, every value of HOSTILE."""
    for title, sql, dash in clickhouse_queries():
        values = resolve_variables(filled, dash)
        for name in {n for n, _ in variable_refs(sql) if n in values}:
            unknown = filled.query(sql, with_value(values, name, "no-such-value"))
            for value in HOSTILE:
                assert filled.query(sql, with_value(values, name, value)) == unknown, (title, name, value)


def with_value(values: expand.Values, name: str, value: str) -> expand.Values:
    """``values`` with ``name`` set to ``value`` (the one value selected, if it is multi-valued)."""
    return {**values, name: value if isinstance(values[name], str) else [value]}


def panel_query(
    filled: Filled, stem: str, title: str, interval_s: int = 60, model: Sample | None = None
) -> Result:
    """A panel's first query with the variables Grafana resolves (``model``: that model chosen)."""
    dash = load(GRAFANA / "dashboards" / f"{stem}.json")
    panel = next(p for p in dash["panels"] if p["title"] == title)
    values = resolve_variables(filled, dash)
    if model is not None:
        values = {**values, "model": model.model, "version": model.version}
    return filled.query(panel["targets"][0]["rawSql"], values, interval_s)


def test_the_numbers_are_those_of_the_simulated_run(filled: Filled) -> None:
    s = filled.sample
    assert panel_query(filled, "model-overview", "Events in range").rows == [(s.events,)]
    for interval_s in (60, 300):
        rate = panel_query(filled, "model-overview", "Events/s (event time)", interval_s)
        assert sum(rate.column("events_per_s")) * interval_s == pytest.approx(s.events)
    assert panel_query(filled, "model-overview", "Alerts firing").rows[0][0] >= 1
    assert panel_query(filled, "model-overview", "Features drifting (latest window)").rows == [
        (len(DRIFT_FEATURES),)
    ]
    heat = panel_query(filled, "model-overview", "PSI by feature")
    assert set(heat.column("feature")) == set(s.features)
    assert len(set(heat.column("time"))) == s.windows

    latest = panel_query(filled, "feature-drift", "Latest window")
    by_feature = {row[0]: dict(zip(latest.columns, row, strict=True)) for row in latest.rows}
    assert {f for f, r in by_feature.items() if r["status"] == "drift"} == set(DRIFT_FEATURES)
    assert all(by_feature[f]["psi"] > 0.2 for f in DRIFT_FEATURES)
    assert by_feature["plan"]["ks"] is None  # categorical: no KS, shown empty rather than 0

    fairness = panel_query(filled, "fairness", "Latest window per attribute")
    di = dict(zip(fairness.column("attribute"), fairness.column("disparate_impact"), strict=True))
    assert di["region"] < 0.8 < di["gender"]  # the simulated regression hits region=south

    attempts = panel_query(filled, "pipeline-health", "Notification attempts not sent (from the store)")
    assert sorted(attempts.column("outcome")) == ["failed", "retry"]
    latency = panel_query(filled, "model-overview", "Latency p50 / p95 / p99 (window)")
    assert all(p50 < p95 < p99 for _, p50, p95, p99 in latency.rows)
    assert isinstance(latency.rows[0][0], datetime)


def epoch_ms(t: datetime) -> int:
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)


def expected_group_rates(sample: Sample) -> dict[tuple[int, str], tuple[float, float | None]]:
    """(window end, "attr=group") -> (positive rate, TPR), recomputed from the simulated events."""
    df = pl.DataFrame(simulate.generate(sample.traffic)).with_columns(
        positive=pl.col("prediction") >= 0.5, label_positive=pl.col("label") == 1
    )
    out: dict[tuple[int, str], tuple[float, float | None]] = {}
    for i in range(sample.windows):
        end = sample.start_ms + (i + 1) * (sample.end_ms - sample.start_ms) // sample.windows
        window = df.filter((pl.col("ts") >= end - sample.window_ms) & (pl.col("ts") < end))
        for attr in sample.attributes:
            for (group,), g in window.group_by([attr]):
                label_pos = int(g["label_positive"].sum())
                tp = int((g["positive"] & g["label_positive"]).sum())
                out[(end, f"{attr}={group}")] = (
                    float(g["positive"].mean()),  # type: ignore[arg-type]
                    tp / label_pos if label_pos else None,
                )
    return out


def test_per_group_panels_show_the_simulated_rates(filled: Filled) -> None:
    s = filled.sample
    expected = expected_group_rates(s)
    groups = {f"{a}={g}" for a in s.attributes for g in simulate.SEGMENTS[a][0]}
    for title, which in (("Positive rate by group", 0), ("TPR by group", 1)):
        # One point per window (they end at every pane end) and group, equal to the events' rate.
        result = panel_query(filled, "fairness", title)
        got = {(epoch_ms(t), g): v for t, g, v in result.rows}
        assert {g for _, g in got} == groups, title
        assert len({t for t, _ in got}) == s.windows
        want = {k: v[which] for k, v in expected.items() if v[which] is not None}
        assert got.keys() == want.keys(), title
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (title, key)
        # Coarser intervals show the last window ending in each.
        coarse = panel_query(filled, "fairness", title, interval_s=300)
        last: dict[tuple[int, str], tuple[int, float]] = {}
        for (end, g), value in want.items():
            key = (end // 300_000 * 300_000, g)
            if key not in last or last[key][0] < end:
                last[key] = (end, value)
        assert {(epoch_ms(t), g): v for t, g, v in coarse.rows} == pytest.approx(
            {k: v for k, (_, v) in last.items()}
        )

    # The regression: region=south's positive rate (and TPR) collapses in the second half, below the others.
    attr, _ = FAIRNESS_REGRESSION.split("=")
    rate = {k: v for k, (v, _) in expected.items()}
    before, final = s.start_ms + s.window_ms, s.end_ms  # the first full window, untouched; the last
    others = [g for g in groups if g.startswith(f"{attr}=") and g != FAIRNESS_REGRESSION]
    assert rate[(final, FAIRNESS_REGRESSION)] < 0.5 * rate[(before, FAIRNESS_REGRESSION)]
    assert all(rate[(final, FAIRNESS_REGRESSION)] < 0.5 * rate[(final, g)] for g in others)
    for title in ("Positive rate by group", "TPR by group"):
        shown = {g: v for t, g, v in panel_query(filled, "fairness", title).rows if epoch_ms(t) == final}
        assert min(shown, key=shown.__getitem__) == FAIRNESS_REGRESSION, title


def test_per_group_panels_follow_the_attribute_variable(filled: Filled) -> None:
    dash = load(GRAFANA / "dashboards" / "fairness.json")
    values = {**resolve_variables(filled, dash), "attribute": ["gender"]}
    for title in ("Positive rate by group", "TPR by group"):
        panel = next(p for p in dash["panels"] if p["title"] == title)
        assert panel["fieldConfig"]["defaults"]["displayName"] == "${__field.labels.segment}"
        rows = filled.query(panel["targets"][0]["rawSql"], values).rows
        assert {g for _, g, _ in rows} == {"gender=female", "gender=male"}, title


def test_disparate_impact_keeps_its_four_fifths_line() -> None:
    dash = load(GRAFANA / "dashboards" / "fairness.json")
    panel = next(p for p in dash["panels"] if p["title"].startswith("Disparate impact"))
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, 0.8]


# -- Model quality (the overview's last row) ----------------------------------------------------

QUALITY_PANELS = [
    "Prediction and label drift (PSI)",
    "Classifier quality (labelled events)",
    "Labelled share and positive rates",
    "Regressor error (MAE / RMSE)",
    "Per slice (latest window)",
]


def window_ends(sample: Sample) -> list[int]:
    """Every window's end: one per pane end."""
    pane_ms = (sample.end_ms - sample.start_ms) // sample.windows
    return [sample.start_ms + (i + 1) * pane_ms for i in range(sample.windows)]


def in_window(sample: Sample, df: pl.DataFrame, end: int) -> pl.DataFrame:
    return df.filter((pl.col("ts") >= end - sample.window_ms) & (pl.col("ts") < end))


def expected_reports(sample: Sample) -> dict[int, dict[str, Any]]:
    """Window end -> the drift report of the window's simulated events folded straight into a
    sketch (no messages, panes or store) and compared with the sample's reference."""
    binning = sample.reference.binning
    kinds = {f: binning.kind(f) for f in binning.features}
    spec = TableSpec(segments=SEGMENTS, prediction="prediction", label="label", latency="latency_ms")
    df = sample.frame()
    return {
        end: drift_report(
            sample.reference, ModelSketch(binning).update(to_batch(in_window(sample, df, end), spec, kinds))
        )
        for end in window_ends(sample)
    }


@pytest.fixture(scope="module")
def reports(filled: Filled) -> dict[str, dict[int, dict[str, Any]]]:
    """Model -> window end -> its report, for both simulated models."""
    return {s.model: expected_reports(s) for s in (filled.sample, filled.regression)}


def by_series(result: Result) -> dict[str, dict[int, float]]:
    """A long-format result (time, series, value) as series -> time (epoch ms) -> value."""
    out: dict[str, dict[int, float]] = {}
    for t, name, value in result.rows:
        out.setdefault(name, {})[epoch_ms(t)] = value
    return out


def last_per_interval(points: dict[int, float], interval_ms: int) -> dict[int, float]:
    """The value of the last window ending in each interval, by the interval's start."""
    return {t // interval_ms * interval_ms: v for t, v in sorted(points.items())}


def test_the_model_overview_ends_with_a_model_quality_row() -> None:
    dash = load(GRAFANA / "dashboards" / "model-overview.json")
    panels = dash["panels"]
    titles = [p["title"] for p in panels]
    row = titles.index("Model quality")
    assert panels[row]["type"] == "row"
    assert titles[row + 1 :] == QUALITY_PANELS
    assert panels[row]["gridPos"]["y"] == max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels[:row])
    assert all(p["gridPos"]["y"] > panels[row]["gridPos"]["y"] for p in panels[row + 1 :])
    # The drift panel keeps the 0.2 line of the feature PSI panels; the quality panels say which
    # series is which by the metric.
    psi = panels[row + 1]["fieldConfig"]["defaults"]
    assert psi["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [s["value"] for s in psi["thresholds"]["steps"]] == [None, 0.2]
    for p in panels[row + 1 : row + 5]:
        if p["title"] != "Labelled share and positive rates":
            assert p["fieldConfig"]["defaults"]["displayName"] == "${__field.labels.series}", p["title"]


def test_prediction_and_label_drift_is_each_window_s_psi(
    filled: Filled, reports: dict[str, dict[int, dict[str, Any]]]
) -> None:
    title = "Prediction and label drift (PSI)"
    for s in (filled.sample, filled.regression):
        got = by_series(panel_query(filled, "model-overview", title, model=s))
        assert set(got) == {"prediction_psi", "label_psi"}
        for role in ("prediction", "label"):
            want = {end: r[role]["psi"] for end, r in reports[s.model].items()}
            assert got[f"{role}_psi"] == pytest.approx(want, rel=1e-9), (s.model, role)
            # Coarser intervals show the worst window of each, as the feature PSI panels do.
            coarse = by_series(panel_query(filled, "model-overview", title, interval_s=300, model=s))
            worst: dict[int, float] = {}
            for end, v in want.items():
                worst[end // 300_000 * 300_000] = max(v, worst.get(end // 300_000 * 300_000, 0.0))
            assert coarse[f"{role}_psi"] == pytest.approx(worst, rel=1e-9)
    # The classifier's scores move with its drifted features; the regressor's labels move up.
    churn = by_series(panel_query(filled, "model-overview", title))
    assert churn["prediction_psi"][filled.sample.end_ms] > 0.2
    price = by_series(panel_query(filled, "model-overview", title, model=filled.regression))
    first_full = filled.regression.start_ms + filled.regression.window_ms  # before the drift
    assert price["label_psi"][filled.regression.end_ms] > 0.2 > price["label_psi"][first_full]


def test_classifier_quality_is_each_window_s_labelled_events(
    filled: Filled, reports: dict[str, dict[int, dict[str, Any]]]
) -> None:
    s, title = filled.sample, "Classifier quality (labelled events)"
    got = by_series(panel_query(filled, "model-overview", title))
    assert set(got) == {"accuracy", "f1", "roc_auc"}  # a binary classifier: no macro_f1
    df = s.frame()
    for end in window_ends(s):
        current = reports[s.model][end]["performance"]["current"]
        window = in_window(s, df, end)
        label, score = window["label"].to_numpy(), window["prediction"].to_numpy()
        oracle = {
            "accuracy": skm.accuracy_score(label, score >= 0.5),
            "f1": skm.f1_score(label, score >= 0.5),
            "roc_auc": skm.roc_auc_score(label, score),
        }
        for metric, series in got.items():
            assert series[end] == pytest.approx(current[metric], rel=1e-12), (metric, end)
            assert 0.0 <= series[end] <= 1.0
            # accuracy and F1 are exact; ROC AUC comes from the score histograms (ties within a bin)
            tolerance = 5e-3 if metric == "roc_auc" else 1e-12
            assert series[end] == pytest.approx(oracle[metric], abs=tolerance), (metric, end)
    assert all(len(series) == s.windows for series in got.values())
    coarse = by_series(panel_query(filled, "model-overview", title, interval_s=300))
    assert coarse == {m: pytest.approx(last_per_interval(v, 300_000)) for m, v in got.items()}
    assert panel_query(filled, "model-overview", title, model=filled.regression).rows == []


def test_the_labelled_share_is_one_when_every_event_has_a_label(filled: Filled) -> None:
    title = "Labelled share and positive rates"
    for s in (filled.sample, filled.regression):
        result = panel_query(filled, "model-overview", title, model=s)
        assert [epoch_ms(t) for t in result.column("time")] == window_ends(s)
        assert result.column("labelled_share") == [1.0] * s.windows, s.model
    s = filled.sample
    df = s.frame()
    for t, _, label_rate, predicted_rate in panel_query(filled, "model-overview", title).rows:
        window = in_window(s, df, epoch_ms(t))
        assert label_rate == pytest.approx(window["label"].mean(), abs=1e-12)
        assert predicted_rate == pytest.approx((window["prediction"] >= 0.5).mean(), abs=1e-12)
    regressor = panel_query(filled, "model-overview", title, model=filled.regression)
    assert set(regressor.column("label_positive_rate")) == {None}  # no positives for a regressor


def test_regressor_error_is_each_window_s_labelled_events(
    filled: Filled, reports: dict[str, dict[int, dict[str, Any]]]
) -> None:
    s, title = filled.regression, "Regressor error (MAE / RMSE)"
    got = by_series(panel_query(filled, "model-overview", title, model=s))
    assert set(got) == {"mae", "rmse"}
    df = s.frame()
    for end in window_ends(s):
        current = reports[s.model][end]["performance"]["current"]
        window = in_window(s, df, end)
        label, prediction = window["label"].to_numpy(), window["prediction"].to_numpy()
        oracle = {
            "mae": skm.mean_absolute_error(label, prediction),
            "rmse": float(np.sqrt(skm.mean_squared_error(label, prediction))),
        }
        for metric, series in got.items():
            assert series[end] == pytest.approx(current[metric], rel=1e-9), (metric, end)
            assert series[end] == pytest.approx(oracle[metric], rel=1e-9), (metric, end)
    # The labels move up by REGRESSION_BIAS halfway: the error of the last window is far above
    # that of the last window before the drift.
    first_full = s.start_ms + s.window_ms
    assert got["mae"][s.end_ms] > got["mae"][first_full] + REGRESSION_BIAS / 2
    assert panel_query(filled, "model-overview", title).rows == []  # the classifier has none


def test_the_per_slice_table_is_the_latest_window_s_groups(
    filled: Filled, reports: dict[str, dict[int, dict[str, Any]]]
) -> None:
    s, title = filled.sample, "Per slice (latest window)"
    result = panel_query(filled, "model-overview", title)
    rows = {(r[0], r[1]): dict(zip(result.columns, r, strict=True)) for r in result.rows}
    assert list(rows) == sorted((a, g) for a in s.attributes for g in simulate.SEGMENTS[a][0])
    rates = expected_group_rates(s)
    report = reports[s.model][s.end_ms]
    for (attr, group), row in rows.items():
        rate, tpr = rates[(s.end_ms, f"{attr}={group}")]
        assert row["positive_rate"] == pytest.approx(rate, abs=5e-5)
        assert row["tpr"] == (None if tpr is None else pytest.approx(tpr, abs=5e-5))
        assert row["attribute_psi"] == pytest.approx(report["features"][attr]["psi"], abs=5e-5)
        assert epoch_ms(row["as_of"]) == s.end_ms
    worst = min(rows, key=lambda k: rows[k]["positive_rate"])
    assert f"{worst[0]}={worst[1]}" == FAIRNESS_REGRESSION
    # A range that ends earlier shows its own newest window.
    dash = load(GRAFANA / "dashboards" / "model-overview.json")
    panel = next(p for p in dash["panels"] if p["title"] == title)
    early = s.start_ms + s.window_ms
    earlier = run(
        filled.store,
        panel["targets"][0]["rawSql"],
        resolve_variables(filled, dash),
        TimeRange(s.start_ms, early, 60),
    )
    assert {epoch_ms(t) for t in earlier.column("as_of")} == {early}
    assert dict(zip(earlier.column("slice"), earlier.column("positive_rate"), strict=True))["south"] == (
        pytest.approx(rates[(early, FAIRNESS_REGRESSION)][0], abs=5e-5)
    )


# -- Prometheus ---------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: apt-get update && apt-get install -y prometheus")
    return path


def run_promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def service_metrics() -> dict[str, tuple[set[str], str]]:
    """Series name -> (label names, type) for everything ``driftline.telemetry`` exports."""
    out: dict[str, tuple[set[str], str]] = {"up": ({"job", "instance"}, "gauge")}
    for m in vars(telemetry).values():
        if isinstance(m, MetricWrapperBase):
            labels = {*m._labelnames, "job", "instance"}
            if m._type == "counter":
                out[f"{m._name}_total"] = (labels, "counter")
            elif m._type == "histogram":
                out[f"{m._name}_bucket"] = (labels | {"le"}, "histogram")
                out[f"{m._name}_sum"] = out[f"{m._name}_count"] = (labels, "counter")
            else:
                out[m._name] = (labels, m._type)
    return out


GRAFANA_PROMQL_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$__interval": "15s",
    '"$model|"': '"churn|"',
}


def dashboard_promql() -> list[str]:
    exprs = []
    for path in DASHBOARD_FILES:
        for _, t in targets(load(path)):
            if "expr" in t:
                expr = t["expr"]
                for var, value in GRAFANA_PROMQL_VARIABLES.items():
                    expr = expr.replace(var, value)
                assert "$" not in expr, f"unsubstituted variable in {expr}"
                exprs.append(expr)
    return exprs


def test_every_pipeline_health_panel_is_prometheus_but_the_outbox_table() -> None:
    dash = load(GRAFANA / "dashboards" / "pipeline-health.json")
    kinds = {p["title"]: p["datasource"]["type"] for p in dash["panels"]}
    clickhouse = [t for t, k in kinds.items() if k != "prometheus"]
    assert clickhouse == ["Notification attempts not sent (from the store)"]
    assert len(dashboard_promql()) >= 15


def test_promql_names_only_metrics_and_labels_the_service_exports() -> None:
    known = service_metrics()
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    recorded = {  # a recording rule's series carry the labels it aggregates by
        r["record"]: set(re.findall(r"\w+", re.findall(r"\bby \(([^)]*)\)", r["expr"])[0]))
        for g in rules["groups"]
        for r in g["rules"]
        if "record" in r
    }
    exprs = dashboard_promql() + [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for expr in exprs:
        names = set(re.findall(r"\b(driftline[_:][a-z0-9_:]*|up)\b", expr))
        assert names, expr
        for name in names:
            assert name in known or name in recorded, (
                f"{name} is not exported by driftline.telemetry ({expr})"
            )
        for name, selector in re.findall(r"\b(driftline_[a-z0-9_]*|up)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                assert label in known[name][0], f"{name} has no label {label!r}"
        available = set().union(*(known[n][0] if n in known else recorded[n] for n in names))
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {g.strip() for g in grouping.split(",")}
            assert labels <= available, f"grouping by unknown labels {labels - available} in {expr}"


def test_every_dashboard_promql_expression_parses(tmp_path: Path) -> None:
    groups = [
        {
            "name": "dashboards",
            "rules": [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(dashboard_promql())],
        }
    ]
    (tmp_path / "exprs.yml").write_text(yaml.safe_dump({"groups": groups}))
    out = run_promtool("check", "rules", "exprs.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


LABEL_VALUES = {
    "model": ["churn"],
    "outcome": ["accepted", "rejected", "late", "sent", "retry", "failed"],
    "topic": ["predictions"],
    "partition": ["0", "1"],
    "operation": ["flush", "metrics"],
    "receiver": ["oncall"],
    "severity": ["warning"],
    "feature": ["f00_normal"],
    "metric": ["psi"],
    "route": ["/v1/events"],
    "method": ["POST"],
    "status": ["200"],
    "destination": ["topic", "spill"],
    "reason": ["value", "attribute"],
    "consumer": ["consumer-0"],
}


def series_line(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def synthetic_series() -> list[dict[str, str]]:
    """Growing counters, gauges and histograms for every driftline metric, as a promtool test input."""
    base = {"job": "driftline", "instance": "driftline:8000"}
    series = [series_line("up", base, "1x30")]
    for m in vars(telemetry).values():
        if not isinstance(m, MetricWrapperBase):
            continue
        for combo in itertools.product(*(LABEL_VALUES[name] for name in m._labelnames)):
            labels = {**base, **dict(zip(m._labelnames, combo, strict=True))}
            if m._type == "counter":
                series.append(series_line(f"{m._name}_total", labels, "0+10x30"))
            elif m._type == "histogram":
                for i, bound in enumerate(m._upper_bounds):
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    series.append(series_line(f"{m._name}_bucket", {**labels, "le": le}, f"0+{i + 1}x30"))
                series.append(series_line(f"{m._name}_sum", labels, "0+1x30"))
                series.append(series_line(f"{m._name}_count", labels, f"0+{len(m._upper_bounds)}x30"))
            else:
                series.append(series_line(m._name, labels, "5+1x30"))
    return series


def test_every_dashboard_promql_expression_returns_series(tmp_path: Path) -> None:
    exprs = dashboard_promql()
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": synthetic_series(),
                # An empty expectation fails exactly for the expressions that return something.
                "promql_expr_test": [{"expr": e, "eval_time": "20m", "exp_samples": []} for e in exprs],
            }
        ],
    }
    (tmp_path / "exprs.test.yml").write_text(yaml.safe_dump(test))
    out = run_promtool("test", "rules", "exprs.test.yml", cwd=tmp_path)
    returned = {
        json.loads(m) for m in re.findall(r'expr: ("(?:[^"\\]|\\.)*"), time:', out.stdout + out.stderr)
    }
    assert "got: nil" not in out.stdout + out.stderr
    assert set(exprs) - returned == set(), f"no series from these expressions:\n{out.stdout}{out.stderr}"


def test_prometheus_config_and_rules_pass_promtool() -> None:
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "rules.yml"),
        ("test", "rules", "rules.test.yml"),
    ):
        out = run_promtool(*args)
        assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}{out.stderr}"
        assert "SUCCESS" in out.stdout + out.stderr


def test_the_service_rules_cover_lag_silence_and_notification_failures() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    wanted = {"DriftlineConsumerLagGrowing", "DriftlineNoEvents", "DriftlineNotificationFailures"}
    assert wanted <= set(alerts)
    tested = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())
    fired = {a["alertname"] for t in tested["tests"] for a in t.get("alert_rule_test", []) if a["exp_alerts"]}
    assert fired == set(alerts), "every alert has a promtool unit test in which it fires"
