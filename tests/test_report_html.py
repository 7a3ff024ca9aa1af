"""The HTML report's document: its numbers are the JSON report's, every feature has its section,
hostile names stay text, nothing is fetched, 1,000 features stay small; from the CLI, the API and
the notifications' links. What a browser makes of it: tests/test_report_browser.py."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from driftline.alerting.receivers import pagerduty_event, report_url, slack_message, with_report_url
from driftline.api.app import create_app
from driftline.cli import main
from driftline.detectors.profile import Batch, Binning, Comparison, ModelSketch, drift_report
from driftline.ingest.compare import compare_tables
from driftline.ingest.files import TableSpec
from driftline.links import LINK_TTL_S, ReportLinks
from driftline.report_html import COLUMNS, anchor, feature_id, output_id, render_report
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate

from .test_api import assert_problem

SPEC = TableSpec(segments=["region", "gender"], prediction="prediction", label="label", latency="latency_ms")
HOSTILE = [
    "<script>alert(1)</script>",
    "a b",
    "a.20.b",
    "q\"uote's",
    "x&amp;y",
    "</script><b>",
    "ünï 🚀",
    "-",
]


class Page(HTMLParser):
    """What the tests read of a page: elements by id, the tables' cells, every URL attribute, the
    embedded JSON, the slice selector's options."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, dict[str, str | None]] = {}
        self.urls: list[str] = []
        self.rows: dict[str, list[list[dict[str, str | None]]]] = {}  # table id -> rows of cells
        self.options: list[str] = []
        self.data = ""
        self._table: str | None = None
        self._in_data = False
        self._row: list[dict[str, str | None]] | None = None
        self.feed(text)
        self.report = orjson.loads(self.data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "id" in a:
            assert a["id"] not in self.ids, f"id {a['id']!r} twice"
            self.ids[str(a["id"])] = a | {"tag": tag}
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action", "data")]
        if tag == "table" and "sortable" in (a.get("class") or ""):
            self._table = str(a["id"])
            self.rows[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(a)
        elif tag == "script" and a.get("id") == "report-data":
            self._in_data = True
        elif tag == "option":
            self.options.append(str(a["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None and self._table:
            if (self._row and "scope" not in self._row[0]) or self._row[0].get("scope") == "row":
                self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "script":
            self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data


def rows_of(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    outputs = [(r, report[r]) for r in ("prediction", "label") if report.get(r)]
    return [*report["features"].items(), *outputs]


def assert_table_is_the_report(page: Page, table: str, report: dict[str, Any]) -> None:
    rows = page.rows[table]
    expected = rows_of(report)
    assert [r[0]["data-value"] for r in rows] == [name for name, _ in expected]
    for cells, (name, f) in zip(rows, expected, strict=True):
        for cell, (heading, kind, get) in zip(cells[1:], COLUMNS, strict=True):
            want = get(f)
            got = cell["data-value"]
            if kind == "text":
                assert got == str(want), (name, heading)
            elif want is None or not math.isfinite(want):
                assert got == "", (name, heading)
            else:
                assert float(str(got)) == want, (name, heading)  # exact: repr round-trips


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Comparison, Path, Path]:
    d = tmp_path_factory.mktemp("html")
    generate(Traffic(n=6000, seed=1)).drop(FILE_DROP).write_parquet(d / "ref.parquet")
    drifted = Traffic(n=5000, seed=2, drift_at=0.0, drift_features=["f00_normal", "plan"],
                      fairness_regression="region=south")  # fmt: skip
    generate(drifted).drop(FILE_DROP).write_parquet(d / "cur.parquet")
    return (
        compare_tables(d / "ref.parquet", d / "cur.parquet", SPEC, by=["region"]),
        d / "ref.parquet",
        d / "cur.parquet",
    )


def test_every_number_in_the_table_is_the_json_reports(compared: tuple[Comparison, Path, Path]) -> None:
    comparison = compared[0]
    page = Page(render_report(comparison))
    assert page.report == orjson.loads(orjson.dumps(comparison.report))  # embedded whole
    assert_table_is_the_report(page, "table-0", comparison.report)
    for name in comparison.report["features"]:
        section = page.ids[feature_id(name)]
        assert section["tag"] == "section" and section["data-name"] == name
    for role in ("prediction", "label"):
        assert page.ids[output_id(role)]["tag"] == "section"
    assert page.ids["latency-0"]["tag"] == "table"


def test_the_ks_gap_drawn_is_the_reports(compared: tuple[Comparison, Path, Path]) -> None:
    comparison = compared[0]
    whole = render_report(comparison).split('id="view-1"')[0]
    label = r'aria-label="([^"]*?): cumulative distributions[^"]*" class="cdf" data-ks-gap="([^"]+)"'
    gaps = re.findall(label, whole)
    numeric = [(n, f) for n, f in rows_of(comparison.report) if f["kind"] == "numeric"]
    assert [name for name, _ in gaps] == [name for name, _ in numeric]
    for (_, gap), (_, f) in zip(gaps, numeric, strict=True):
        assert float(gap) == pytest.approx(f["ks"]["statistic"], abs=1e-12)
    # the dotted gap joins the two drawn curves: its ends are points of the current and reference lines
    for svg in re.findall(r'<svg[^>]*class="cdf".*?</svg>', whole):
        cur, ref = (
            set(p.split()) for p in re.findall(r'<polyline class="(?:cur|ref) line" points="([^"]+)"', svg)
        )
        x, y1, y2 = re.search(
            r'<line class="gap" x1="([^"]+)" x2="[^"]+" y1="([^"]+)" y2="([^"]+)"', svg
        ).groups()
        assert f"{x},{y1}" in ref and f"{x},{y2}" in cur


def test_slices_get_a_selector_and_a_view_each(compared: tuple[Comparison, Path, Path]) -> None:
    comparison = compared[0]
    page = Page(render_report(comparison))
    slices = comparison.report["slices"]["region"]
    assert page.ids["view"]["tag"] == "select"
    assert page.options == [f"view-{i}" for i in range(1 + len(slices))]
    assert page.ids["view-0"].get("hidden") is None
    for i, (value, sliced) in enumerate(slices.items(), start=1):
        view = page.ids[f"view-{i}"]
        assert view["data-view"] == f"region = {value}" and "hidden" in view
        assert_table_is_the_report(page, f"table-{i}", sliced)
        # a slice draws its drifted features (the table has every number): the file stays small
        drawn = {name for name in sliced["features"] if feature_id(name, i) in page.ids}
        assert drawn == set(sliced["drifted_features"])


def test_nothing_is_fetched_from_anywhere(compared: tuple[Comparison, Path, Path]) -> None:
    text = render_report(compared[0])
    page = Page(text)
    assert page.urls and all(u.startswith("#") for u in page.urls), page.urls
    assert not re.search(r"url\(|@import|<link|<img|<iframe|src=", text, re.IGNORECASE)
    assert not re.search(r"fetch\(|XMLHttpRequest|import\(", text)


def hostile_comparison(names: list[str], n: int = 400) -> Comparison:
    rng = np.random.default_rng(3)
    ref_cols: dict[str, Any] = {}
    cur_cols: dict[str, Any] = {}
    for k, name in enumerate(names):
        if k % 2:
            values = np.array(["<b>", "&amp;", 'x"y', "</script>"], dtype=object)
            ref_cols[name], cur_cols[name] = values[rng.integers(0, 4, n)], values[rng.integers(0, 3, n)]
        else:
            ref_cols[name], cur_cols[name] = rng.normal(size=n), rng.normal(0.5, size=n)
    kinds = {name: ("categorical" if k % 2 else "numeric") for k, name in enumerate(names)}
    binning = Binning.fit(ref_cols, kinds)  # type: ignore[arg-type]
    ref = ModelSketch(binning).update(Batch(n, ref_cols))
    cur = ModelSketch(binning).update(Batch(n, cur_cols))
    return Comparison(drift_report(ref, cur), ref, cur)


def test_hostile_names_stay_text_and_get_distinct_ids() -> None:
    comparison = hostile_comparison(HOSTILE)
    text = render_report(comparison, title="<i>t</i>", facts=[("<k>", "<v>")])
    page = Page(text)
    assert page.report == orjson.loads(orjson.dumps(comparison.report))
    assert "<script>alert" not in text and "</script><b>" not in text and "<i>t</i>" not in text
    assert text.count("<script") == 2  # the JSON and the sorting code, nothing else
    assert_table_is_the_report(page, "table-0", comparison.report)
    ids = [feature_id(name) for name in HOSTILE]
    assert len(set(ids)) == len(HOSTILE) and all(i in page.ids for i in ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", anchor(name)) for name in HOSTILE)
    assert {page.ids[i]["data-name"] for i in ids} == set(HOSTILE)


def test_a_thousand_features_stay_small() -> None:
    names = [f"feature_{k:04d}" for k in range(1000)]
    text = render_report(hostile_comparison(names, n=300))
    size = len(text.encode())
    assert size < 5_000_000, f"{size / 1e6:.1f} MB"
    assert len(Page(text).rows["table-0"]) == 1000


def test_compare_html_writes_the_page(compared: tuple[Comparison, Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _, ref, cur = compared
    out = tmp_path / "report.html"
    roles = ["--segments", "region,gender", "--prediction", "prediction", "--label", "label",
             "--latency", "latency_ms"]  # fmt: skip
    argv = ["compare", "--reference", str(ref), "--current", str(cur), *roles, "--by", "region"]
    assert main([*argv, "--json", "--html", str(out)]) == 0
    captured = capsys.readouterr()
    printed = orjson.loads(captured.out)
    assert f"HTML report: {out}" in captured.err
    page = Page(out.read_text())
    assert page.report == printed
    assert_table_is_the_report(page, "table-0", printed)
    assert len(page.options) == 1 + len(printed["slices"]["region"])
    assert main([*argv, "--html", str(tmp_path / "nowhere" / "r.html")]) == 2


START_MS = 1_767_225_600_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Service]]:
    root = tmp_path_factory.mktemp("report-api")
    ref = root / "ref.parquet"
    generate(Traffic(n=5000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    settings = load_settings(
        store=f"chdb://{root / 'store'}",
        references={"churn": str(ref)},
        segments=["region", "gender"],
        slices=["region"],
        api_keys={"read-key": ["read"], "ingest-key": ["ingest"]},
        pane_ms=60_000,
        lateness_ms=0,
    )
    service = Service(settings)
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            traffic = Traffic(
                n=1200, seed=1, start_ms=START_MS, rate=10.0, drift_at=0.5, drift_features=["f00_normal"]
            )
            evs = list(events(generate(traffic)))
            r = client.post("/v1/events", json=evs, headers={"authorization": "Bearer ingest-key"})
            assert r.status_code == 200 and r.json()["accepted"] == 1200
            yield client, service
    finally:
        service.stop()


def test_the_api_serves_the_same_report_as_html(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    params = {"from": START_MS, "to": START_MS + 120_000, "by": "region"}
    read = {"authorization": "Bearer read-key"}
    r = client.get("/v1/models/churn/report", params=params, headers=read)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    page = Page(r.text)
    assert page.report == client.get("/v1/models/churn/drift", params=params, headers=read).json()
    assert page.report["n_current"] == 1200
    assert_table_is_the_report(page, "table-0", page.report)
    assert len(page.options) == 1 + len(page.report["slices"]["region"])
    problem = client.get("/v1/models/churn/report", params={**params, "by": "plan"}, headers=read)
    assert problem.status_code == 400 and problem.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert client.get("/v1/models/nobody/report", headers=read).status_code == 404
    assert (
        client.get("/v1/models/churn/report", headers={"authorization": "Bearer ingest-key"}).status_code
        == 403
    )


ALERT: dict[str, Any] = {
    "rule": "feature-drift", "model": "churn", "version": "v1", "feature": "a b", "metric": "psi",
    "value": 0.31, "op": ">", "threshold": 0.2, "window_start": START_MS, "window_end": START_MS + 3_600_000,
    "status": "firing", "severity": "critical", "episode": "e1", "starts_at": 1.0, "annotations": {},
}  # fmt: skip


def test_notifications_link_the_report_of_the_alerts_window() -> None:
    open_links = ReportLinks("https://dl.example.com/")  # open mode: no key, no signature
    url = report_url(open_links, ALERT, 0.0)
    assert url == (
        "https://dl.example.com/v1/models/churn/report?from=2026-01-01T00%3A00%3A00.000Z"
        "&to=2026-01-01T01%3A00%3A00.000Z&version=v1#feature-a.20.b"
    )
    sliced = report_url(open_links, ALERT | {"model": "churn[region=south]", "feature": ""}, 0.0)
    assert sliced is not None and "&by=region" in sliced and sliced.endswith("#slice=region%3Dsouth")
    fairness = report_url(open_links, ALERT | {"feature": "region=south"}, 0.0)
    assert fairness is not None and "#" not in fairness  # a group: no feature section to open
    assert report_url(None, ALERT, 0.0) is None and with_report_url(ALERT, None, 0.0) is ALERT
    event = pagerduty_event("key", with_report_url(ALERT, open_links, 0.0))
    assert event["links"] == [{"href": url, "text": "drift report"}]
    message = slack_message([with_report_url(ALERT, open_links, 0.0)], None)
    assert f"<{url.replace('&', '&amp;')}|report>" in orjson.dumps(message).decode()
    assert "links" not in pagerduty_event("key", ALERT)


def test_signed_report_links_open_without_a_key_until_they_expire(api: tuple[TestClient, Service]) -> None:
    """A link from a notification carries exp and sig; the report route takes it instead of a key,
    for exactly that model and query, until it expires."""
    client, service = api
    assert service.link_key is not None
    links = ReportLinks("http://testserver", service.link_key)
    alert = ALERT | {"version": "", "feature": "f00_normal"}
    url = report_url(links, alert, time.time())
    assert url is not None and "&exp=" in url and "&sig=" in url
    path = url.removeprefix("http://testserver").split("#")[0]
    page = client.get(path)  # no Authorization header: a browser following the link
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    tampered = path.replace("from=2026-01-01T00%3A00", "from=2025-01-01T00%3A00")
    assert_problem(client.get(tampered), 401, "invalid or expired")
    other_model = path.replace("/churn/", "/fraud/")
    assert_problem(client.get(other_model), 401, "invalid or expired")
    expired = report_url(links, alert, time.time() - LINK_TTL_S - 60)
    assert expired is not None
    assert_problem(client.get(expired.removeprefix("http://testserver").split("#")[0]), 401, "expired")
    assert_problem(client.get("/v1/models/churn/report"), 401, "missing API key")
