"""A drift report as one self-contained HTML page: ``compare --html``, ``stats --html``, the API.

Pure: a :class:`~driftline.detectors.profile.Comparison` in, a string out. Everything is inline
(CSS, a few lines of JS for sorting and the slice selector, SVG drawn here), so the file opens from
disk with no network. The pictures come from the sketches, never from rows: a numeric feature is
its PSI bins (reference outline over current bars) and its fine-bin CDFs with the KS gap marked,
a categorical one paired bars. The JSON report is embedded as ``<script id="report-data">``; every
number in the table carries its exact value in ``data-value``, which sorting and tests read.
Verdicts are words (DRIFT / ok), never colour alone; the page follows the system's light or dark
scheme.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from driftline.detectors.numeric import NumericSketch
from driftline.detectors.profile import Comparison, FeatureSketch, ModelSketch, edge_labels, psi_contributions

CDF_POINTS = 50  # points per CDF line, evenly spaced in reference mass: 2% steps
BAR_ROWS = 12  # categories drawn per categorical feature; the rest as one "others" row
FAIRNESS_ROWS = 20  # groups drawn per segment attribute
FOUR_FIFTHS = 0.8
W, H = 320, 136  # viewBox of a feature picture
SCALE = 1.5  # its size on the page, in CSS pixels per viewBox unit
LEFT, RIGHT, TOP, BOTTOM = 34, 312, 12, 118  # its plot area


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def anchor(name: str) -> str:
    """An id fragment for any name: letters, digits, ``_`` and ``-`` kept, every other character
    as ``.hex.`` (``a b`` -> ``a.20.b``). Injective, no whitespace, nothing a URL would decode."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else f".{ord(c):x}." for c in name)


def feature_id(name: str, view: int = 0) -> str:
    """The id of a feature's section: ``feature-<name>`` in the whole report, ``v<k>-feature-...``
    in the k-th slice. The prediction and the label are ``output-prediction``, ``output-label``."""
    prefix = "" if view == 0 else f"v{view}-"
    return f"{prefix}feature-{anchor(name)}"


def output_id(role: str, view: int = 0) -> str:
    return ("" if view == 0 else f"v{view}-") + f"output-{role}"


def render_report(
    comparison: Comparison, title: str = "Drift report", facts: Sequence[tuple[str, str]] = ()
) -> str:
    """The page. ``facts``: lines for the summary (what was compared: files, model, store)."""
    report = comparison.report
    views: list[tuple[str, Mapping[str, Any], ModelSketch | None, ModelSketch | None]] = [
        ("all rows", report, comparison.reference, comparison.current)
    ]
    for attr, by_value in (report.get("slices") or {}).items():
        for value, sliced in by_value.items():
            ref, cur = comparison.slices.get(attr, {}).get(value, (None, None))
            views.append((f"{attr} = {value}", sliced, ref, cur))
    selector = ""
    if len(views) > 1:
        options = "".join(
            f'<option value="view-{i}"{" selected" if i == 0 else ""}>{esc(label)}</option>'
            for i, (label, *_) in enumerate(views)
        )
        selector = (
            f'<p class="selector"><label for="view">Slice</label> <select id="view">{options}</select></p>'
        )
    body = "".join(
        _view(i, label, r, ref, cur, facts if i == 0 else ()) for i, (label, r, ref, cur) in enumerate(views)
    )
    data = orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"<", b"\\u003c").decode()
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>{selector}</header><main>{body}</main>"
        f'<script type="application/json" id="report-data">{data}</script>'
        f"<script>{JS}</script></body></html>\n"
    )


# -- one view: the whole, or a slice --------------------------------------------------------------


def _view(
    i: int,
    label: str,
    report: Mapping[str, Any],
    ref: ModelSketch | None,
    cur: ModelSketch | None,
    facts: Sequence[tuple[str, str]],
) -> str:
    hidden = " hidden" if i else ""
    parts = [
        f'<section class="view" id="view-{i}" data-view="{esc(label)}"{hidden}>',
        f"<h2>Summary <small>{esc(label)}</small></h2>",
        _summary(report, facts),
        _table(i, report),
        _performance(report.get("performance")),
        _fairness(report.get("fairness") or {}),
        _latency(i, report.get("latency")),
        "<h2>Each feature</h2>" if i == 0 else "<h2>Drifted features</h2>",
        LEGEND,
    ]
    for name, f in report["features"].items():
        # a slice draws its drifted features only: pictures of every feature in every slice would
        # multiply the file by the slices (the table has every number)
        if i and name not in report["drifted_features"]:
            continue
        sketches = _pair(ref, cur, name, f)
        parts.append(_feature(feature_id(name, i), name, f, sketches))
    for role in ("prediction", "label"):
        if report.get(role):
            pair = (ref.outputs.get(role), cur.outputs.get(role)) if ref and cur else None
            parts.append(_feature(output_id(role, i), role, report[role], pair, role))
    parts.append("</section>")
    return "".join(parts)


LEGEND = (
    '<p class="hint">Reference: dashed outline; current: solid. Numeric: the shares of the PSI bins (the '
    "reference deciles, so the reference reads flat) and the CDFs on the fine bins over the reference's "
    "range, the KS gap dotted. Categorical: each category's share, reference above current.</p>"
)


def _pair(
    ref: ModelSketch | None, cur: ModelSketch | None, name: str, f: Mapping[str, Any]
) -> tuple[FeatureSketch | None, FeatureSketch | None] | None:
    if ref is None or cur is None:
        return None
    if f.get("role") == "segment":
        return ref.mix.get(name), cur.mix.get(name)
    return ref.features.get(name), cur.features.get(name)


def _reference(used: Mapping[str, Any]) -> str:
    """The reference a range was compared with: a stored one (its source and when it was saved),
    or a rolling one (the stored traffic of a range, on the reference's bins)."""
    if "kind" in used:
        return f"{used['kind']}: the stored traffic {used['from']} – {used['to']} (bins {used.get('bins')})"
    made = f", saved {used['created_at']}" if used.get("created_at") else ""
    return f"{used.get('source') or 'unknown source'} ({used['reference_id']}{made})"


def _summary(report: Mapping[str, Any], facts: Sequence[tuple[str, str]]) -> str:
    judged = [n for n, f in report["features"].items() if f.get("role") != "segment"]
    dataset = report.get("dataset_drift") or {}
    share = dataset.get("drifted_share")
    drifted = [n for n in report["drifted_features"] if n in judged]
    rows: list[tuple[str, str]] = [*facts]
    rows += [
        ("reference rows", _int(report["n_reference"])),
        ("current rows", _int(report["n_current"])),
        (
            "drifted features",
            f"{len(drifted)} of {len(judged)}"
            + (f" ({share:.1%}): {'DATASET DRIFT' if dataset.get('drift') else 'no dataset drift'}"
               f" at {dataset.get('threshold', 0):.0%}" if share is not None else ""),
        ),
    ]  # fmt: skip
    if "judged" in report:
        rows.append(("judged", "yes" if report["judged"] else "no: too few rows (statistics only)"))
    rng = report.get("range")
    if rng:
        rows.append(
            ("time range", f"{rng['from'] or 'beginning'} – {rng['to'] or 'now'} ({rng['panes']} panes)")
        )
    used = report.get("reference")
    if used:
        rows.append(("reference used", _reference(used)))
    if report.get("other_reference_events"):  # a reference was replaced within the range
        rows.append(("left out", f"{_int(report['other_reference_events'])} events folded on another "
                     "reference's bins (replaced within the range): not compared"))  # fmt: skip
    if report.get("late_events"):
        rows.append(("late events", _int(report["late_events"])))
    schema = report.get("schema") or {}
    for key, what in (("missing", "missing features"), ("new", "new columns")):
        if schema.get(key):
            rows.append((what, ", ".join(schema[key])))
    t = report.get("thresholds") or {}
    rows.append(("judged by", _thresholds(t)))
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f'<dl class="summary">{items}</dl>'


def _thresholds(t: Mapping[str, Any]) -> str:
    psi = f"PSI p < {t['psi_alpha']:g}" if t.get("psi_alpha") else f"PSI > {t.get('psi', 0.2):g}"
    ks = f"KS p (BH) < {t['ks_alpha']:g}" if t.get("ks_alpha") else f"KS D > {t.get('ks', 0.1):g}"
    return f"{psi} or {ks}"


# -- the table ------------------------------------------------------------------------------------

# (heading, type, value of a feature's report)
COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("kind", "text", lambda f: f["kind"]),
    ("n ref", "number", lambda f: f["n_reference"]),
    ("n cur", "number", lambda f: f["n"]),
    ("null rate", "number", lambda f: f["null_rate"]),
    ("PSI", "number", lambda f: f["psi"]),
    ("KS D", "number", lambda f: (f.get("ks") or {}).get("statistic")),
    ("KS p (BH)", "number", lambda f: (f.get("ks") or {}).get("p_value_adjusted")),
    ("χ² p (BH)", "number", lambda f: (f.get("chi2") or {}).get("p_value_adjusted")),
    ("JS", "number", lambda f: f["js"]),
    ("W1/σ", "number", lambda f: f.get("wasserstein")),
    ("verdict", "text", lambda f: "DRIFT" if f["drift"] else "ok"),
)


def _table(i: int, report: Mapping[str, Any]) -> str:
    heads = "".join(
        f'<th scope="col" data-type="{kind}"><button type="button">{esc(h)}</button></th>'
        for h, kind, _ in (("name", "text", None), *COLUMNS)
    )
    rows = [_row(name, feature_id(name, i), f, "segment mix" if f.get("role") == "segment" else "feature")
            for name, f in report["features"].items()]  # fmt: skip
    rows += [_row(r, output_id(r, i), report[r], "output") for r in ("prediction", "label") if report.get(r)]
    return (
        "<h2>Features, prediction and label</h2>"
        '<p class="hint">Sort by a column with its heading (a button). p-values are Benjamini–Hochberg '
        "adjusted over the report: KS for numeric, χ² for categorical.</p>"
        f'<div class="scroll"><table class="sortable" id="table-{i}"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _row(name: str, target: str, f: Mapping[str, Any], role: str) -> str:
    cells = [f'<th scope="row" data-value="{esc(name)}"><a href="#{target}">{esc(name)}</a>'
             f'{"" if role == "feature" else f" <small>{role}</small>"}</th>']  # fmt: skip
    for heading, kind, get in COLUMNS:
        value = get(f)
        if heading == "verdict":
            cells.append(f'<td class="{"drift" if f["drift"] else "ok"}" data-value="{value}">{value}</td>')
        elif kind == "text":
            cells.append(f'<td data-value="{esc(value)}">{esc(value)}</td>')
        else:
            cells.append(_num_cell(value))
    return f'<tr data-name="{esc(name)}" data-role="{role}">{"".join(cells)}</tr>'


def _num_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '<td data-value="">–</td>'
    return f'<td data-value="{value!r}">{_fmt(value)}</td>'


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return _int(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}" if math.isfinite(x) else str(x)
    return str(x)


def _int(x: int) -> str:
    return f"{x:,}".replace(",", "\u202f")  # a narrow no-break space groups the thousands


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


# -- model quality, fairness, latency -------------------------------------------------------------


def _performance(perf: Mapping[str, Any] | None) -> str:
    if not perf:
        return ""
    ref, cur = perf.get("reference") or {}, perf.get("current") or {}
    names = [k for k in dict.fromkeys([*ref, *cur]) if _scalar(ref.get(k)) and _scalar(cur.get(k))]
    rows = "".join(
        f'<tr><th scope="row">{esc(k)}</th>{_num_cell(ref.get(k))}{_num_cell(cur.get(k))}</tr>' for k in names
    )
    return (
        f"<h2>Model quality <small>{esc(perf.get('task', ''))}</small></h2>"
        '<table class="plain"><thead><tr><th scope="col">metric</th><th scope="col">reference</th>'
        f'<th scope="col">current</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _scalar(x: Any) -> bool:
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool))


def _fairness(fairness: Mapping[str, Any]) -> str:
    parts = []
    for attr, fair in fairness.items():
        groups = fair["groups"]
        compared = [
            g["positive_rate"]
            for g in groups.values()
            if not g["excluded"] and g["positive_rate"] is not None
        ]
        line = FOUR_FIFTHS * max(compared) if compared else None
        rows = []
        for name, g in groups.items():
            rate = g["positive_rate"]
            if g["excluded"]:
                verdict = "not compared (small)"
            elif line is not None and rate is not None and rate < line:
                verdict = "BELOW four-fifths"
            else:
                verdict = "ok"
            rows.append(
                f'<tr><th scope="row">{esc(name)}</th>{_num_cell(g["n"])}{_num_cell(rate)}'
                f"{_num_cell(g['tpr'])}<td>{verdict}</td></tr>"
            )
        di = fair["disparate_impact"]
        di_text = "–" if di is None else f"{di:.3g} ({'BELOW' if di < FOUR_FIFTHS else 'at or above'} 0.8)"
        parts.append(
            f"<h3>by {esc(attr)}</h3>"
            f"<p>disparate impact {esc(di_text)} · demographic parity difference "
            f"{_fmt(fair['demographic_parity_difference'], 3)} · equal opportunity difference "
            f"{_fmt(fair['equal_opportunity_difference'], 3)}</p>"
            + _fairness_svg(attr, groups, line)
            + '<table class="plain"><thead><tr><th scope="col">group</th><th scope="col">n</th>'
            '<th scope="col">positive rate</th><th scope="col">TPR</th><th scope="col">four-fifths rule</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "<h2>Fairness</h2>" + "".join(parts) if parts else ""


def _fairness_svg(attr: str, groups: Mapping[str, Mapping[str, Any]], line: float | None) -> str:
    shown = sorted(groups.items(), key=lambda kv: -kv[1]["n"])[:FAIRNESS_ROWS]
    top = max([g["positive_rate"] or 0.0 for _, g in shown] + [1e-12])
    row, label_w, bar_w = 16, 110, 170
    height = row * len(shown) + 18
    out = [_svg_open(W, height, f"positive rate by {attr}, the four-fifths line dashed")]
    for k, (name, g) in enumerate(shown):
        y = 4 + k * row
        rate = g["positive_rate"] or 0.0
        width = bar_w * rate / top
        cls = "ref" if g["excluded"] else "cur"
        out.append(
            f"<g><title>{esc(name)}: {_pct(g['positive_rate'])}"
            f"{' (small, not compared)' if g['excluded'] else ''}</title>"
            f'<text x="{label_w - 4}" y="{y + 11}" text-anchor="end">{esc(_short(name))}</text>'
            f'<rect class="{cls}" x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row - 5}"/>'
            f'<text x="{label_w + bar_w + 4}" y="{y + 11}">{_pct(g["positive_rate"])}</text></g>'
        )
    if line is not None:
        x = label_w + bar_w * line / top
        out.append(
            f'<line class="gap" x1="{x:.1f}" x2="{x:.1f}" y1="2" y2="{height - 14}"/>'
            f'<text x="{x:.1f}" y="{height - 3}" text-anchor="middle">4/5 of the highest rate</text>'
        )
    return "".join(out) + "</svg>"


def _latency(i: int, latency: Mapping[str, Any] | None) -> str:
    if not latency:
        return ""
    ref = latency.get("reference") or {}
    keys = ("p50", "p90", "p95", "p99", "max", "mean", "count")
    rows = "".join(
        f'<tr><th scope="row">{k}</th>{_num_cell(ref.get(k))}{_num_cell(latency.get(k))}</tr>' for k in keys
    )
    return (
        "<h2>Latency <small>ms</small></h2>"
        f'<table class="plain" id="latency-{i}"><thead><tr><th scope="col">quantile</th>'
        '<th scope="col">reference</th><th scope="col">current</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


# -- one feature ----------------------------------------------------------------------------------


def _feature(
    element_id: str,
    name: str,
    f: Mapping[str, Any],
    sketches: tuple[FeatureSketch | None, FeatureSketch | None] | None,
    role: str = "",
) -> str:
    verdict = '<strong class="drift">DRIFT</strong>' if f["drift"] else '<span class="ok">ok</span>'
    kind = (
        f["kind"] + (" · segment mix" if f.get("role") == "segment" else "") + (f" · {role}" if role else "")
    )
    ks, chi2 = f.get("ks") or {}, f.get("chi2") or {}
    numbers = [f"PSI {_fmt(f['psi'])} (threshold {_fmt(f.get('psi_threshold'))})"]
    if f["kind"] == "numeric":
        numbers.append(f"KS D {_fmt(ks.get('statistic'))} (p {_fmt(ks.get('p_value_adjusted'), 3)})")
        numbers.append(f"W1/σ {_fmt(f.get('wasserstein'))}")
        numbers.append(f"out of range {_pct(f.get('out_of_range_rate'))}")
    else:
        numbers.append(f"χ² p {_fmt(chi2.get('p_value_adjusted'), 3)}")
        numbers.append(f"unseen {_pct(f.get('unseen_rate'))}")
    numbers += [f"JS {_fmt(f['js'])}", f"null rate {_pct(f['null_rate'])}"]
    movers = ""
    if f.get("explain"):
        shown = ", ".join(
            f"{e['bin']} {e['reference_share']:.1%}→{e['current_share']:.1%}" for e in f["explain"][:3]
        )
        movers = f"<p>top movers: {esc(shown)}</p>"
    pictures = _pictures(name, sketches, f)
    return (
        f'<section class="feature" id="{element_id}" data-name="{esc(name)}">'
        f"<h3>{esc(name)} <small>{esc(kind)}</small> {verdict}</h3>"
        f"<p>{esc(' · '.join(numbers))}</p>{movers}{pictures}</section>"
    )


def _pictures(
    name: str, sketches: tuple[FeatureSketch | None, FeatureSketch | None] | None, f: Mapping[str, Any]
) -> str:
    if sketches is None or sketches[0] is None or sketches[1] is None:
        return ""
    ref, cur = sketches
    if not (ref.n and cur.n):
        return '<p class="hint">No values on one side: nothing to draw.</p>'
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        return f'<div class="pictures">{_psi_bars(name, ref, cur)}{_cdfs(name, ref, cur, f)}</div>'
    return f'<div class="pictures">{_category_bars(name, ref, cur)}</div>'


def _svg_open(width: int, height: int, label: str, extra: str = "") -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width * SCALE:.0f}" height="{height * SCALE:.0f}" '
        'role="img" '
        f'aria-label="{esc(label)}"{extra}>'
    )


def _psi_bars(name: str, ref: FeatureSketch, cur: FeatureSketch) -> str:
    """Both sides' shares of each PSI bin, equal slots: reference as a dashed outline over the
    current bars (equal-frequency bins: the reference reads about flat)."""
    terms = psi_contributions(ref, cur)
    top = max(max(t["reference_share"], t["current_share"]) for t in terms) or 1.0
    slot = (RIGHT - LEFT) / len(terms)
    y = lambda share: BOTTOM - (BOTTOM - TOP) * share / top  # noqa: E731
    out = [
        _svg_open(W, H, f"{name}: reference and current share of each PSI bin", ' class="psi"'),
        '<g class="cur">',
    ]
    outline, last = [f"M{LEFT},{BOTTOM}"], ""
    for k, t in enumerate(terms):
        x, top_y = LEFT + k * slot, y(t["current_share"])
        out.append(
            f'<rect x="{x + 1:.0f}" y="{top_y:.0f}" width="{slot - 2:.0f}" height="{BOTTOM - top_y:.0f}">'
            f"<title>{esc(t['bin'])}: {t['reference_share']:.1%} → {t['current_share']:.1%}</title></rect>"
        )
        level = f"V{y(t['reference_share']):.0f}"
        outline.append(("" if level == last else level) + f"H{x + slot:.0f}")
        last = level
    out.append(f'</g><path class="ref" d="{"".join(outline)}V{BOTTOM}"/>')
    labels = edge_labels(ref.bins.psi_edges) if isinstance(ref, NumericSketch) else []
    step = 1 if len(labels) <= 5 else 2
    for k in range(0, len(labels), step):
        out.append(
            f'<text x="{LEFT + (k + 1) * slot:.0f}" y="{BOTTOM + 11}" text-anchor="middle">'
            f"{esc(labels[k])}</text>"
        )
    out.append(_axis(f"{top:.0%}"))
    return "".join(out) + "</svg>"


def _axis(top_label: str) -> str:
    return (
        f'<line class="axis" x1="{LEFT}" x2="{RIGHT}" y1="{BOTTOM}" y2="{BOTTOM}"/>'
        f'<text x="{LEFT - 3}" y="{TOP + 4}" text-anchor="end">{esc(top_label)}</text>'
        f'<text x="{LEFT - 3}" y="{BOTTOM}" text-anchor="end">0</text>'
    )


def _cdfs(name: str, ref: NumericSketch, cur: NumericSketch, f: Mapping[str, Any]) -> str:
    """Both CDFs on the fine edges (the reference's range), CDF_POINTS points each, and the KS gap
    where it is: the edge whose CDFs differ most, just below or at it (as ``stats.ks`` measures)."""
    edges = ref.bins.edges
    lt1, le1 = _cdf(ref)
    lt2, le2 = _cdf(cur)
    lo, hi = float(edges[0]), float(edges[-1])
    span = hi - lo
    px = lambda v: (LEFT + RIGHT) / 2 if span <= 0 else LEFT + (RIGHT - LEFT) * (v - lo) / span  # noqa: E731
    py = lambda p: BOTTOM - (BOTTOM - TOP) * p  # noqa: E731
    gaps = np.abs(np.stack([lt1 - lt2, le1 - le2]))
    side, at = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    # points evenly spaced in the mass of either side (each curve is drawn finely where it rises),
    # and the KS edge itself, where each line steps from just below the edge to at it
    last = len(edges) - 1
    levels = np.linspace(0, 1, CDF_POINTS + 1)
    picks = np.unique(np.concatenate([
        np.linspace(0, last, CDF_POINTS + 1).round().astype(int),
        np.clip(np.searchsorted(le2, levels), 0, last), [at],
    ]))  # fmt: skip
    lines = []
    for cls, lt, le in (("cur", lt2, le2), ("ref", lt1, le1)):
        points = " ".join(
            (f"{px(float(edges[k])):.1f},{py(float(lt[k])):.1f} " if k == at else "")
            + f"{px(float(edges[k])):.1f},{py(float(le[k])):.1f}"
            for k in picks
        )
        lines.append(f'<polyline class="{cls} line" points="{points}"/>')
    a, b = (lt1, lt2) if side == 0 else (le1, le2)
    d = float(gaps[side, at])
    x = px(float(edges[at]))
    ks = (f.get("ks") or {}).get("statistic")
    label = f"KS D = {_fmt(ks if ks is not None else d, 3)} at {edge_labels(edges[at : at + 1])[0]}"
    anchor_side = "start" if x < (LEFT + RIGHT) / 2 else "end"
    shift = 4 if anchor_side == "start" else -4
    return (
        _svg_open(W, H, f"{name}: cumulative distributions, {label}",
                  f' class="cdf" data-ks-gap="{d!r}" data-ks-at="{float(edges[at])!r}"')
        + "".join(lines)
        + f'<line class="gap" x1="{x:.1f}" x2="{x:.1f}" y1="{py(float(a[at])):.1f}" '
        + f'y2="{py(float(b[at])):.1f}"/>'
        + f'<text x="{x + shift:.1f}" y="{TOP + 10}" text-anchor="{anchor_side}">{esc(label)}</text>'
        + _axis("1")
        + f'<text x="{LEFT}" y="{BOTTOM + 11}">{esc(edge_labels(edges[:1])[0])}</text>'
        + f'<text x="{RIGHT}" y="{BOTTOM + 11}" text-anchor="end">{esc(edge_labels(edges[-1:])[0])}</text>'
        + "</svg>"
    )  # fmt: skip


def _cdf(s: NumericSketch) -> tuple[np.ndarray, np.ndarray]:
    """F just below and at each fine edge, as ``stats.ks`` compares them."""
    n = max(s.n, 1)
    below = np.cumsum(s.counts)[:-1]
    return below / n, (below + s.hits) / n


def _category_bars(name: str, ref: FeatureSketch, cur: FeatureSketch) -> str:
    """Paired horizontal bars per category (reference dashed outline above, current solid below):
    the categories moving the PSI most, then the largest ones, BAR_ROWS in all in the reference's
    order; the rest as one line of text."""
    terms = psi_contributions(ref, cur)
    by_psi = sorted(range(len(terms)), key=lambda k: -terms[k]["psi"])[: BAR_ROWS // 2]
    by_share = sorted(
        range(len(terms)), key=lambda k: -max(terms[k]["reference_share"], terms[k]["current_share"])
    )
    keep = sorted(list(dict.fromkeys([*by_psi, *by_share]))[:BAR_ROWS])
    rest = [t for k, t in enumerate(terms) if k not in keep]
    rows = [(terms[k]["bin"], terms[k]["reference_share"], terms[k]["current_share"]) for k in keep]
    top = max(max(r, c) for _, r, c in rows) or 1.0
    row, label_w, bar_w = 18, 96, 140
    height = row * (len(rows) + bool(rest)) + 4
    out = [_svg_open(W, height, f"{name}: reference and current share of each category", ' class="bars"')]
    for k, (label, r, c) in enumerate(rows):
        y = 2 + k * row
        out.append(
            f"<g><title>{esc(label)}: reference {r:.1%}, current {c:.1%}</title>"
            f'<text x="{label_w - 4}" y="{y + 12}" text-anchor="end">{esc(_short(label))}</text>'
            f'<rect class="ref" x="{label_w}" y="{y + 1}" width="{bar_w * r / top:.0f}" height="7"/>'
            f'<rect class="cur" x="{label_w}" y="{y + 9}" width="{bar_w * c / top:.0f}" height="7"/>'
            f'<text x="{label_w + bar_w + 4}" y="{y + 12}">{r:.1%} → {c:.1%}</text></g>'
        )
    if rest:
        r, c = sum(t["reference_share"] for t in rest), sum(t["current_share"] for t in rest)
        out.append(
            f'<text x="{label_w}" y="{2 + len(rows) * row + 12}">{len(rest)} others: {r:.1%} → {c:.1%}</text>'
        )
    return "".join(out) + "</svg>"


def _short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


CSS = """
:root{--fg:#1b1f24;--bg:#fff;--muted:#59636e;--line:#d1d9e0;--cur:#0969da;--ref:#1b1f24;
--drift:#b3261e;--ok:#1a7f37;--row:#f6f8fa;font:14px/1.45 system-ui,sans-serif;color:var(--fg);
background:var(--bg)}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;
--cur:#4493f8;--ref:#e6edf3;--drift:#ff7b72;--ok:#3fb950;--row:#151b23}}
body{margin:0 auto;max-width:1200px;padding:0 16px 48px}h1{font-size:1.5em}
h2{margin-top:1.6em;font-size:1.2em}small,.hint{color:var(--muted);font-weight:normal}
.summary{display:grid;grid-template-columns:max-content auto;gap:2px 16px}.summary dt{color:var(--muted)}
.summary dd{margin:0}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th[scope=row],thead th:first-child{text-align:left}tbody tr:nth-child(even){background:var(--row)}
thead th button{font:inherit;font-weight:600;color:inherit;background:none;border:0;padding:2px;
cursor:pointer}
thead th button:focus-visible,select:focus-visible,a:focus-visible{outline:2px solid var(--cur);
outline-offset:1px}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
.drift{color:var(--drift);font-weight:700}.ok{color:var(--ok)}a{color:var(--cur)}
.feature{border-top:1px solid var(--line);padding-top:4px}
.feature h3{margin:.4em 0 .2em}.feature p{margin:.2em 0}.pictures{display:flex;flex-wrap:wrap;gap:12px}
svg{max-width:100%;height:auto;font-size:9px;fill:var(--fg);overflow:visible}
svg .cur{fill:var(--cur);fill-opacity:.55;stroke:none}
svg .ref{fill:none;stroke:var(--ref);stroke-dasharray:4 2}
svg .line{fill:none;stroke-width:1.5}svg .line.cur{stroke:var(--cur);fill:none}svg .axis{stroke:var(--muted)}
svg .gap{stroke:var(--drift);stroke-width:2;stroke-dasharray:2 2}
"""

JS = """
(() => {
  for (const table of document.querySelectorAll("table.sortable")) {
    const heads = [...table.tHead.rows[0].cells];
    heads.forEach((th, col) => th.querySelector("button").addEventListener("click", () => {
      const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      for (const h of heads) h.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", dir);
      const number = th.dataset.type === "number";
      const body = table.tBodies[0];
      const rows = [...body.rows];
      rows.sort((a, b) => {
        const x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
        if (x === "" || y === "") return (x === "") - (y === "");  // no value: last either way
        const c = number ? Number(x) - Number(y) : x.localeCompare(y);
        return dir === "ascending" ? c : -c;
      });
      body.append(...rows);
    }));
  }
  const select = document.getElementById("view");
  if (select) {
    const show = () => {
      for (const view of document.querySelectorAll("section.view")) view.hidden = view.id !== select.value;
    };
    select.addEventListener("change", show);
    // a link to one slice (#slice=region%3Dsouth, from a slice's alert) opens its view
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted.startsWith("slice=")) {
      const [attr, ...value] = wanted.slice(6).split("=");
      const label = attr + " = " + value.join("=");
      const view = [...document.querySelectorAll("section.view")].find((v) => v.dataset.view === label);
      if (view) select.value = view.id;
    }
    show();
  }
})();
"""
