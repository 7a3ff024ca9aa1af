"""The CLI as users run it, as subprocesses: journeys that connect, output a script can rely on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest

from driftline.cli import build_parser
from driftline.contract import IDENTITY_FIELDS

from .helpers import ROLES, cli, cli_env

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
EVENTS = 20_000
RULES = "rules:\n  - {name: feature-psi, metric: psi, threshold: 0.2, severity: critical}\n"


def example(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs the example of ``driftline COMMAND --help`` verbatim in bash, ``driftline`` being this code."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices[command].epilog.split("example:\n", 1)[1]  # type: ignore[union-attr]
    script = f'driftline() {{ "{sys.executable}" -m driftline.cli "$@"; }}\n{text}'
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=600
    )


def table_rows(out: str) -> list[dict[str, str]]:
    """The rows of the first rich table printed, as {column: cell} (unicode or ASCII borders)."""
    cells = [[c.strip() for c in re.split(r"[│┃|]", line)[1:-1]] for line in out.splitlines()]
    header, *body = [r for r in cells if r]
    return [dict(zip(header, r, strict=True)) for r in body]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with data/reference.parquet and data/current.parquet from `simulate --out`."""
    root = tmp_path_factory.mktemp("journey")
    done = cli("simulate", "--out", "data", "--events", str(EVENTS), cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def test_simulated_files_go_through_reference_replay_stats_and_alerts(simulated: Path) -> None:
    root = simulated
    built = example("reference", root)  # as written in `driftline reference --help`
    assert built.returncode == 0, built.stderr
    reference = orjson.loads(built.stdout)
    assert reference["rows"] == EVENTS and not set(reference["features"]) & set(IDENTITY_FIELDS)

    replayed = example("replay", root)  # simulate's file as it is: ids, model and event time inside
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"accepted={EVENTS}  rejected=0  late=0")
    assert cli("alerts", "--store", f"chdb://{root / 'store'}").stdout == "no alerts\n"

    page = root / "stats.html"
    stats = cli(
        "stats", "--store", f"chdb://{root / 'store'}", "--model", "churn", "--json", "--fail-on-drift",
        "--html", str(page),
    )  # fmt: skip
    assert stats.returncode == 1, stats.stderr  # the current file drifted
    report = orjson.loads(stats.stdout)
    assert report["n_current"] == EVENTS and "f00_normal" in report["drifted_features"]
    assert RFC3339.fullmatch(report["range"]["to"]) and report["range"]["from"] is None
    html = page.read_text()  # the same report as a page (tests/test_report_html.py reads it closely)
    assert orjson.loads(html.split('id="report-data">')[1].split("</script>")[0]) == report
    assert 'id="feature-f00_normal"' in html and f"HTML report: {page}" in stats.stderr

    # the journey: replay with --model into a store with alerting rules
    (root / "rules.yaml").write_text(RULES)
    dsn = f"chdb://{root / 'alerting'}"
    built = cli(
        "reference",
        "build",
        "--store",
        dsn,
        "--model",
        "churn",
        "--file",
        "data/reference.parquet",
        *ROLES,
        cwd=root,
    )
    assert built.returncode == 0, built.stderr
    replay = ["replay", "--store", dsn, "--file", "data/current.parquet", "--model", "churn"]
    replayed = cli(*replay, "--rules", "rules.yaml", "--json", cwd=root)
    assert replayed.returncode == 0, replayed.stderr
    assert orjson.loads(replayed.stdout)["accepted"] == EVENTS  # stdout holds the totals only

    table = cli("alerts", "--store", dsn)
    assert table.returncode == 0, table.stderr
    rows = table_rows(table.stdout)
    assert rows and all(RFC3339.fullmatch(r["at"]) for r in rows)
    assert {r["rule"] for r in rows} == {"feature-psi"}
    assert any(r["feature"] == "f00_normal" and r["state"] == "firing" for r in rows)
    lines = cli("alerts", "--store", dsn, "--json").stdout.splitlines()
    alerts = [orjson.loads(line) for line in lines]
    assert len(alerts) == len(rows) and all(RFC3339.fullmatch(a["at"]) for a in alerts)
    assert cli("alerts", "--store", dsn, "--model", "fraud").stdout == "no alerts for model 'fraud'\n"
    assert cli("alerts", "--store", dsn, "--model", "fraud", "--json").stdout == ""


def test_compare_skips_event_identity_and_fails_on_drift(simulated: Path) -> None:
    ref, cur = simulated / "data" / "reference.parquet", simulated / "data" / "current.parquet"
    drifted = cli(
        "compare", "--reference", str(ref), "--current", str(cur), *ROLES, "--json", "--fail-on-drift"
    )
    assert drifted.returncode == 1, drifted.stderr
    report = orjson.loads(drifted.stdout)
    assert not set(report["features"]) & {*IDENTITY_FIELDS, "prediction", "label"}
    assert {report["features"][s]["role"] for s in ("region", "gender")} == {"segment"}  # their mix
    assert {"f00_normal", "plan"} <= set(report["drifted_features"])
    same = cli("compare", "--reference", str(ref), "--current", str(ref), *ROLES, "--fail-on-drift")
    assert same.returncode == 0, same.stderr
    assert cli("compare", "--reference", str(ref), "--current", str(cur)).returncode == 0  # no gate asked


def test_table_shows_type_errors_and_names_each_test_p_value(tmp_path: Path) -> None:
    n = 300
    pl.DataFrame({"x": [float(i) for i in range(n)], "c": ["a", "b", "c"] * (n // 3)}).write_csv(
        tmp_path / "ref.csv"
    )
    x = [str(i) for i in range(n)]
    x[7] = "oops"  # a text value in a numeric column
    pl.DataFrame({"x": x, "c": ["a", "a", "c"] * (n // 3)}).write_csv(tmp_path / "cur.csv")
    done = cli("compare", "--reference", str(tmp_path / "ref.csv"), "--current", str(tmp_path / "cur.csv"))
    assert done.returncode == 0, done.stderr
    rows = {r["feature"]: r for r in table_rows(done.stdout)}
    assert rows["x"]["type errors"] == "1" and rows["c"]["type errors"] == "0"
    assert rows["x"]["KS p (BH)"] != "-" and rows["x"]["chi2 p (BH)"] == "-"
    assert rows["c"]["KS p (BH)"] == "-" and float(rows["c"]["chi2 p (BH)"]) < 0.05


def test_stray_text_in_a_reference_column_warns_and_log_level_goes_after_the_command(tmp_path: Path) -> None:
    x = [str(i) for i in range(500)]
    x[42] = "n.a."  # one stray value makes the column text
    pl.DataFrame({"x": x}).write_csv(tmp_path / "ref.csv")
    pl.DataFrame({"x": [float(i) for i in range(500)]}).write_csv(tmp_path / "cur.csv")
    files = ["--reference", str(tmp_path / "ref.csv"), "--current", str(tmp_path / "cur.csv")]
    warned = cli("compare", *files)
    assert warned.returncode == 0, warned.stderr
    (line,) = warned.stderr.splitlines()
    msg = orjson.loads(line)["msg"]
    assert "column 'x' is read as categorical because of 1 value(s) that are not numbers ('n.a.')" in msg
    assert "--kind x=numeric" in msg
    assert cli("compare", *files, "--log-level", "error").stderr == ""  # after the command
    assert cli("--log-level", "ERROR", "compare", *files).stderr == ""  # and before it
    assert cli("compare", *files, "--kind", "x=numeric").stderr == ""  # the kind was given: no warning
    bad = cli("compare", *files, "--log-level", "loud")
    assert bad.returncode == 2 and "invalid choice: 'LOUD'" in bad.stderr


def test_silence_times_are_rfc3339(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    added = cli("silence", "add", "--store", dsn, "--match", "model=churn", "--duration", "2h")
    assert added.returncode == 0, added.stderr
    assert RFC3339.fullmatch(orjson.loads(added.stdout)["ends_at"])
    (listed,) = [orjson.loads(line) for line in cli("silence", "list", "--store", dsn).stdout.splitlines()]
    assert RFC3339.fullmatch(listed["starts_at"]) and RFC3339.fullmatch(listed["ends_at"])
    assert listed["active"] is True
