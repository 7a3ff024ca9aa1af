"""Arguments the commands share, and turning them into the objects the services take.

Nothing heavy is imported at module level: ``driftline compare --help`` must stay instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from driftline.detectors.defaults import DEFAULT_FINE_BINS, DEFAULT_MIN_SUPPORT, DEFAULT_PSI_BINS


class UsageError(Exception):
    """A problem with the command's input: printed as one line, exit code 2."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def duration(text: str) -> int:
    """'90s', '5m', '1h', '250ms' or plain milliseconds -> milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(suffix)]) * units[suffix])
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 250ms, 30s, 5m, 1h")


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def print_json(document: Any) -> None:
    print(orjson.dumps(document).decode())


# -- Kafka clients ------------------------------------------------------------------------------


def add_kafka_args(c: argparse.ArgumentParser, with_config: bool = True) -> None:
    if with_config:
        c.add_argument("--config", default=None, help="driftline.yaml: its kafka: section is used")
    c.add_argument(
        "--kafka-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka property for every Kafka client, e.g. security.protocol=SASL_SSL;"
        " VALUE may be ${env:NAME} or ${file:PATH} (repeatable; wins over the file and the config)",
    )
    c.add_argument(
        "--kafka-config-file",
        default=None,
        metavar="PATH",
        help="librdkafka properties, one key=value per line (a Kafka client.properties)",
    )


def kafka_extra(args: argparse.Namespace) -> dict[str, object]:
    """--kafka-config-file, then --kafka-config (the later wins)."""
    from driftline.alerting.config import ConfigError
    from driftline.settings import kafka_overrides

    try:
        return dict(kafka_overrides(args.kafka_config_file, args.kafka_config))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def kafka_properties(args: argparse.Namespace) -> dict[str, object]:
    """The kafka: section of --config, then --kafka-config-file, then --kafka-config."""
    from driftline.alerting.config import ConfigError
    from driftline.settings import load_settings

    extra = kafka_extra(args)
    if not getattr(args, "config", None):
        return extra
    try:
        return dict(load_settings(args.config, extra).kafka)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


# -- files and roles ----------------------------------------------------------------------------


def add_table_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--features", type=csv, default=None, help="feature columns (default: all others)")
    c.add_argument("--exclude", type=csv, default=[], help="columns that are not features")
    c.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="COL=numeric|categorical",
        help="override an inferred feature kind (repeatable)",
    )
    c.add_argument(
        "--segments",
        type=csv,
        default=[],
        help="segment columns for fairness (reference build: default, the model's registered ones)",
    )
    c.add_argument("--prediction", help="prediction column (score or class)")
    c.add_argument("--label", help="label column")
    c.add_argument("--latency", help="latency column in milliseconds")
    c.add_argument("--positive-threshold", type=float, default=0.5, help="score >= this is positive")
    c.add_argument("--positive-class", default="1", help="class value counted as positive")
    c.add_argument("--bins", type=int, default=DEFAULT_FINE_BINS, help="fine bins per numeric feature")
    c.add_argument("--psi-bins", type=int, default=DEFAULT_PSI_BINS)


def table_spec(args: argparse.Namespace) -> Any:
    from driftline.ingest.files import TableSpec

    kinds: dict[str, Any] = {}
    for pair in args.kind:
        name, _, kind = pair.partition("=")
        if kind not in ("numeric", "categorical"):
            raise UsageError(f"--kind {pair!r}: expected COLUMN=numeric or COLUMN=categorical")
        kinds[name] = kind
    return TableSpec(
        features=args.features,
        exclude=args.exclude,
        kinds=kinds,
        segments=args.segments,
        prediction=args.prediction,
        label=args.label,
        latency=args.latency,
        positive_threshold=args.positive_threshold,
        positive_class=args.positive_class,
    )


# -- verdicts -----------------------------------------------------------------------------------


def _threshold(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor auto") from None


def add_threshold_args(c: argparse.ArgumentParser, note: str = "", significance: bool = False) -> None:
    """Thresholds left out are the defaults, or a model's registered ones (as ``note`` says).
    ``significance``: ``--psi-threshold auto`` / ``--ks-threshold auto`` with ``--alpha``, and
    ``--dataset-drift`` (a report's verdict, see :func:`thresholds`)."""
    if significance:
        auto = (
            " or auto: significant at --alpha (PSI's critical value for the sample sizes; KS p-value"
            " after BH)"
        )
        c.add_argument("--psi-threshold", type=_threshold, default=None, help=f"default 0.2{note}{auto}")
        c.add_argument("--ks-threshold", type=_threshold, default=None, help=f"default 0.1{note}{auto}")
        c.add_argument("--alpha", type=float, default=0.05, help="significance of auto thresholds (0.05)")
        c.add_argument(
            "--dataset-drift",
            type=float,
            default=None,
            help=f"share of drifted features at which the dataset drifted (default 0.5{note})",
        )
    else:
        c.add_argument("--psi-threshold", type=float, default=None, help=f"default 0.2{note}")
        c.add_argument("--ks-threshold", type=float, default=None, help=f"default 0.1{note}")
    c.add_argument(
        "--min-support",
        type=int,
        default=None,
        help=f"fairness: smallest group compared; compare --by: smallest slice judged"
        f" ({DEFAULT_MIN_SUPPORT}{note})",
    )


def given_thresholds(args: argparse.Namespace) -> dict[str, Any]:
    """The thresholds given as options, by Settings field name."""
    given = {"psi_threshold": args.psi_threshold, "ks_threshold": args.ks_threshold}
    given["min_support"] = args.min_support
    return {k: v for k, v in given.items() if v is not None}


def thresholds(args: argparse.Namespace, base: Any = None) -> Any:
    """The thresholds given as options, the others from ``base`` (a model's registered ones)."""
    from dataclasses import replace

    from driftline.detectors.profile import Thresholds

    given: dict[str, Any] = {"min_support": args.min_support}
    given["dataset_drift"] = getattr(args, "dataset_drift", None)
    for name in ("psi", "ks"):
        value = getattr(args, f"{name}_threshold")
        if value == "auto":
            given[f"{name}_alpha"] = args.alpha
        elif value is not None:
            given[name], given[f"{name}_alpha"] = value, None  # an effect size given wins
    kept = {k: v for k, v in given.items() if v is not None or k.endswith("_alpha")}
    return replace(base or Thresholds(), **kept)


def add_report_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--json", action="store_true", help="print one JSON document")
    c.add_argument(
        "--html",
        default=None,
        metavar="PATH",
        help="also write the report as one self-contained HTML page (tables, a picture per feature,"
        " a slice selector with --by; opens offline)",
    )
    c.add_argument(
        "--fail-on-drift",
        action="store_true",
        help="exit 1 when a feature, the prediction or the label drifted, also in a judged slice"
        " of --by (to gate a pipeline)",
    )


def write_html(comparison: Any, args: argparse.Namespace, title: str, facts: list[tuple[str, str]]) -> None:
    """``--html PATH``: the comparison's page, written whole (a reader never sees half a page)."""
    if not args.html:
        return
    from pathlib import Path

    from driftline.report_html import render_report

    path = Path(args.html)
    page = render_report(comparison, title, facts)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--html {args.html}: {exc.strerror or exc}") from None
    print(f"HTML report: {path}", file=sys.stderr)


def print_report(report: dict[str, Any], args: argparse.Namespace) -> int:
    """Prints the report; the exit code is 1 when asked to fail on drift and a feature, the
    prediction or the label drifted, of the whole or of a slice (only judged slices drift)."""
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        from driftline.report_text import print_report as print_text

        print_text(report)
    slices = [s for by_value in report.get("slices", {}).values() for s in by_value.values()]
    drifted = any(_drifted(r) for r in [report, *slices])
    return 1 if args.fail_on_drift and drifted else 0


def _drifted(report: dict[str, Any]) -> bool:
    outputs = [report.get(role) or {} for role in ("prediction", "label")]
    return bool(report["drifted_features"]) or any(o.get("drift") for o in outputs)


# -- settings and the store ---------------------------------------------------------------------


def settings(config: str | None = None, kafka: dict[str, object] | None = None, **given: Any) -> Any:
    """Settings as serve builds them; options left out (None) keep the file's or the default."""
    from driftline.alerting.config import ConfigError
    from driftline.settings import load_settings

    try:
        return load_settings(config, kafka, **{k: v for k, v in given.items() if v is not None})
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def service(settings: Any, **kwargs: Any) -> Any:
    """The wired service; a bad reference, rules file or store is a usage error."""
    from driftline.alerting.config import ConfigError
    from driftline.ingest.files import TableError
    from driftline.service import Service
    from driftline.storage.errors import StoreError

    try:
        return Service(settings, **kwargs)
    except (ConfigError, TableError, StoreError) as exc:
        raise UsageError(str(exc)) from None


def open_store(dsn: str) -> Any:
    from driftline.service import open_store
    from driftline.storage.errors import StoreError

    try:
        return open_store(dsn)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
