"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``, which scripts/test
installs like promtool) driven by Playwright, never a downloaded browser. Opened from disk it logs
no error and fetches nothing, shows every feature's section, sorts by mouse and keyboard, switches
slices and follows the dark scheme. Structure and numbers, never pixels; the screenshots are for
the README (``DRIFTLINE_UPDATE_SCREENSHOTS=1`` rewrites docs/img/report-*.png)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from driftline.ingest.compare import compare_tables
from driftline.ingest.files import TableSpec
from driftline.report_html import feature_id, output_id, render_report
from driftline.simulate import FILE_DROP, Traffic, generate

CHROMIUM = "/usr/bin/chromium"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SPEC = TableSpec(segments=["region", "gender"], prediction="prediction", label="label", latency="latency_ms")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("browser")
    generate(Traffic(n=20_000, seed=1000)).drop(FILE_DROP).write_parquet(d / "ref.parquet")
    current = Traffic(n=12_000, seed=7, drift_at=0.0, drift_features=["f00_normal", "f01_lognormal", "plan"],
                      fairness_regression="region=south", concept_drift=0.4)  # fmt: skip
    generate(current).drop(FILE_DROP).write_parquet(d / "cur.parquet")
    comparison = compare_tables(d / "ref.parquet", d / "cur.parquet", SPEC, by=["region"])
    facts = [("reference file", "reference.parquet"), ("current file", "current.parquet")]
    path = d / "report.html"
    path.write_text(render_report(comparison, "Drift report: churn", facts), encoding="utf-8")
    return path, orjson.loads(orjson.dumps(comparison.report))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)  # Debian's; Playwright downloads nothing
        try:
            yield b
        finally:
            b.close()


class Opened:
    """A page opened from disk, with every console error and every request it made."""

    def __init__(self, browser: Browser, path: Path, scheme: str = "light", fragment: str = "") -> None:
        self.page: Page = browser.new_page(viewport={"width": 1200, "height": 900}, color_scheme=scheme)  # type: ignore[arg-type]
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.as_uri() + fragment)
        self.page.wait_for_load_state("load")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")

    def column(self, table: str, col: int) -> list[str]:
        return self.page.eval_on_selector_all(
            f"#{table} tbody tr", f"rows => rows.map(r => r.cells[{col}].dataset.value)"
        )


def sorted_numbers(values: list[str], descending: bool = False) -> bool:
    numbers = [float(v) for v in values if v != ""]
    empties_last = all(v == "" for v in values[len(numbers) :])
    return empties_last and numbers == sorted(numbers, reverse=descending)


def test_opens_offline_without_errors_and_shows_every_section(
    browser: Browser, report_file: tuple[Path, dict[str, Any]]
) -> None:
    path, report = report_file
    opened = Opened(browser, path)
    page = opened.page
    assert opened.errors == []
    assert opened.requests == [path.as_uri()]  # the file itself, nothing else
    embedded = page.evaluate("JSON.parse(document.getElementById('report-data').textContent)")
    assert embedded == report
    shown = page.eval_on_selector_all("#view-0 section.feature", "s => s.map(e => e.id)")
    expected = [feature_id(n) for n in report["features"]] + [output_id(r) for r in ("prediction", "label")]
    assert shown == expected
    for name, f in report["features"].items():  # its pictures, drawn and visible
        pictures = page.locator(f"#{feature_id(name)} svg")
        assert pictures.count() == (2 if f["kind"] == "numeric" else 1)
        assert pictures.first.bounding_box()["width"] > 200  # type: ignore[index]
    verdicts = page.eval_on_selector_all("#table-0 tbody tr td:last-child", "c => c.map(e => e.textContent)")
    judged = [*report["features"].values(), report["prediction"], report["label"]]
    assert verdicts == ["DRIFT" if f["drift"] else "ok" for f in judged]
    assert not page.locator("#view-1").is_visible()
    shots = DOCS_IMG if os.environ.get("DRIFTLINE_UPDATE_SCREENSHOTS") else path.parent
    page.screenshot(path=str(shots / "report-overview.png"))
    page.locator(f"#{feature_id('f00_normal')}").screenshot(path=str(shots / "report-feature.png"))
    assert (shots / "report-feature.png").stat().st_size > 10_000
    page.close()


def test_headers_sort_by_mouse_and_keyboard(
    browser: Browser, report_file: tuple[Path, dict[str, Any]]
) -> None:
    path, report = report_file
    opened = Opened(browser, path)
    page = opened.page
    heads = page.locator("#table-0 thead th")
    names = heads.all_inner_texts()
    psi = names.index("PSI")
    button = heads.nth(psi).locator("button")
    button.click()
    assert heads.nth(psi).get_attribute("aria-sort") == "ascending"
    assert sorted_numbers(opened.column("table-0", psi))
    button.click()
    assert heads.nth(psi).get_attribute("aria-sort") == "descending"
    values = opened.column("table-0", psi)
    assert sorted_numbers(values, descending=True)
    top = page.locator("#table-0 tbody tr").first.get_attribute("data-name")
    assert report["features"].get(top, report.get(top))["psi"] == max(  # type: ignore[index]
        f["psi"] for f in [*report["features"].values(), report["prediction"], report["label"]]
    )
    # the keyboard: Tab from one heading's button reaches the next, Enter sorts by it
    heads.nth(0).locator("button").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == names[1]  # kind
    page.keyboard.press("Enter")
    assert heads.nth(1).get_attribute("aria-sort") == "ascending"
    assert heads.nth(psi).get_attribute("aria-sort") is None
    kinds = opened.column("table-0", 1)
    assert kinds == sorted(kinds)
    ks = names.index("KS D")
    heads.nth(ks).locator("button").focus()
    page.keyboard.press("Enter")
    assert sorted_numbers(opened.column("table-0", ks))
    assert opened.errors == []
    page.close()


def test_the_slice_selector_switches_views(
    browser: Browser, report_file: tuple[Path, dict[str, Any]]
) -> None:
    path, report = report_file
    opened = Opened(browser, path)
    page = opened.page
    values = list(report["slices"]["region"])
    page.select_option("#view", "view-2")
    assert page.locator("#view-2").is_visible() and not page.locator("#view-0").is_visible()
    assert page.locator("#view-2").get_attribute("data-view") == f"region = {values[1]}"
    rows = page.eval_on_selector_all("#table-2 tbody tr", "rs => rs.map(r => r.dataset.name)")
    assert rows[: len(report["features"])] == list(report["slices"]["region"][values[1]]["features"])
    assert page.locator(f"#{feature_id('f00_normal', 2)} svg").first.is_visible()
    page.select_option("#view", "view-0")
    assert page.locator("#view-0").is_visible() and not page.locator("#view-2").is_visible()
    assert opened.errors == []
    page.close()


def test_a_slice_link_opens_that_slice(browser: Browser, report_file: tuple[Path, dict[str, Any]]) -> None:
    """A slice's alert links ``#slice=region%3Dvalue`` (alerting/receivers.py): that view is shown."""
    path, report = report_file
    value = list(report["slices"]["region"])[1]
    opened = Opened(browser, path, fragment="#slice=" + quote(f"region={value}", safe=""))
    page = opened.page
    assert page.locator("#view-2").is_visible() and not page.locator("#view-0").is_visible()
    assert page.eval_on_selector("#view", "s => s.value") == "view-2"
    assert opened.errors == []
    page.close()


def luminance(css: str) -> float:
    r, g, b = (int(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_dark_mode_follows_the_system(browser: Browser, report_file: tuple[Path, dict[str, Any]]) -> None:
    path, _ = report_file
    for scheme, dark in (("light", False), ("dark", True)):
        opened = Opened(browser, path, scheme)
        page = opened.page
        style = "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]"
        background, text = page.eval_on_selector(":root", style)
        assert (luminance(background) < 0.3) is dark and (luminance(text) > 0.7) is dark, (scheme, background)
        drift = page.locator("#table-0 td.drift").first
        assert drift.inner_text() == "DRIFT"  # the word, whatever the colour
        assert opened.errors == []
        page.close()
    opened = Opened(browser, path)
    opened.page.emulate_media(color_scheme="dark")
    background = opened.page.eval_on_selector(":root", "e => getComputedStyle(e).backgroundColor")
    assert luminance(background) < 0.3
    opened.page.close()
