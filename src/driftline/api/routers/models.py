"""Models, references and the read side: drift over any range, metric time series, latency, fairness."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from driftline import query
from driftline.api.deps import TimeRange, body_chunks, presented_key, require, service
from driftline.api.problems import Problem
from driftline.contract import InvalidEvent, format_ts, parse_ts
from driftline.detectors.profile import Comparison, ModelSketch
from driftline.detectors.slice_ids import parse_slice_id
from driftline.detectors.windows import ReferenceKindError, checked_against
from driftline.ingest.files import TableError, TableSpec, load_reference
from driftline.links import verify
from driftline.report_html import render_report
from driftline.service import Service
from driftline.storage.codec import model_settings, reference_id, reference_rows

router = APIRouter(prefix="/v1/models", tags=["models"])
read = [Depends(require("read"))]
admin = [Depends(require("admin"))]
FILE_TYPES = {  # content type of a reference upload -> the file suffix load_reference reads
    "application/vnd.apache.parquet": ".parquet",
    "application/octet-stream": ".parquet",
    "text/csv": ".csv",
}
MAX_RANGE_BODY = 64 << 10  # a JSON {"from", "to"}
ModelId = Annotated[str, PathParam(min_length=1, max_length=256, pattern=r"^[^/\x00]+$", examples=["churn"])]


class ModelThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no bool for a number
    psi: float = Field(0.2, gt=0, le=1e6, examples=[0.2])
    ks: float = Field(0.1, gt=0, le=1, examples=[0.1])
    min_support: int = Field(30, ge=1, le=1_000_000_000)
    psi_alpha: float | None = Field(
        None, gt=0, lt=1, description="Judge PSI by its critical value at this significance instead of psi."
    )
    ks_alpha: float | None = Field(
        None, gt=0, lt=1, description="Judge KS by its BH-adjusted p-value below this instead of ks."
    )
    dataset_drift: float = Field(
        0.5, gt=0, le=1, description="Share of drifted features at which the dataset drifted."
    )


SegmentName = Annotated[str, Field(min_length=1, max_length=256)]


class ModelWarmup(BaseModel):
    """How the model's reference is fitted when it has none: on its first ``events`` events, or on
    its events of the event-time range ``from`` .. ``to`` (once event time passed ``to``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)
    events: int | None = Field(
        None, ge=0, le=10_000_000, description="First events to fit on; 0: never (dead-letter them)."
    )
    from_: str | int | None = Field(None, alias="from", examples=["2026-01-01T00:00:00Z"])
    to: str | int | None = Field(None, examples=["2026-01-02T00:00:00Z"])

    @model_validator(mode="after")
    def _range(self) -> ModelWarmup:
        if (self.from_ is None) != (self.to is None):
            raise ValueError("from and to go together")
        if self.from_ is not None and self.to is not None:
            try:
                start, end = parse_ts(self.from_), parse_ts(self.to)
            except InvalidEvent as exc:
                raise ValueError(f"from/to: {exc.reason}") from None
            if start >= end:
                raise ValueError("from must be before to")
        return self


class ModelConfig(BaseModel):
    """A model's registration: who owns it and how it is judged. The stream folds its events with
    it, its windows are judged by it, alert rules without a threshold compare with it."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no bool for a number
    description: str = Field("", max_length=2000, examples=["churn propensity, gradient boosting"])
    owner: str = Field("", max_length=200, examples=["growth-ml"])
    segments: list[SegmentName] = Field(
        default_factory=list,
        max_length=64,
        description="The segment attributes folded (fairness); none: the reference's. Also the segment "
        "columns of a reference uploaded without ?segments=.",
        examples=[["region", "gender"]],
    )
    slices: list[SegmentName] = Field(
        default_factory=list,
        max_length=8,
        description="Attributes (segments or categorical features) whose values the stream also watches "
        "as slices: every report per value, alert rules with by. Take effect with the next reference.",
        examples=[["region"]],
    )
    positive_threshold: float = Field(0.5, ge=0, le=1, description="A score at or above it is positive.")
    positive_class: str = Field(
        "1", min_length=1, max_length=256, description="A class prediction equal to it (or true) is positive."
    )
    thresholds: ModelThresholds = ModelThresholds()
    warmup: ModelWarmup | None = Field(
        None, description="Without a reference: fit one on the first events (default: the service's)."
    )
    against: str | None = Field(
        None,
        description="What the stream's windows are compared with: none, the reference; previous (the "
        "window before), trailing:7d (the 7 days before it) or seasonal:1w (the same window a week "
        "earlier), merged from stored panes on the reference's bins.",
        examples=["seasonal:1w"],
    )

    @field_validator("against")
    @classmethod
    def _against(cls, against: str | None) -> str | None:
        return checked_against(against)

    @field_validator("segments")
    @classmethod
    def _distinct(cls, segments: list[str]) -> list[str]:
        repeated = sorted({s for s in segments if segments.count(s) > 1})
        if repeated:
            raise ValueError(f"repeated: {', '.join(repeated)}")
        return segments


class ReferenceRange(BaseModel):
    """Use the stored traffic of a past range as the reference (the binning stays the same)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)
    from_: str | int = Field(alias="from", examples=["2026-01-01T00:00:00Z"])
    to: str | int = Field(examples=["2026-01-02T00:00:00Z", 1767312000000])


def _reference(svc: Service, model: str) -> ModelSketch:
    ref = svc.references.get(model)
    if ref is None:
        raise Problem(
            404, f"{query.no_reference(svc.store, model)}; PUT /v1/models/{model}/reference to set one"
        )
    return ref


def _warmup_plan(svc: Service, model: str) -> dict[str, Any]:
    """What ends the model's warm-up: a number of events, or event time passing a range."""
    window = svc.model_settings[model].warmup_range
    if window is None:
        return {"needed_events": svc.bootstrapper.needed(model)}
    return {"from": format_ts(window[0]), "to": format_ts(window[1])}


def _summary(
    svc: Service, model: str, config: dict[str, Any] | None, staged: dict[str, int] | None = None
) -> dict[str, Any]:
    ref = svc.references.get(model)
    warming = (
        (staged if staged is not None else query.warming_up(svc.store)).get(model) if ref is None else None
    )
    return {
        "model_id": model,
        "config": config or {},
        # no reference yet: its events are kept until one is fitted on them (warm-up)
        "warmup": None if warming is None else {"staged_events": warming, **_warmup_plan(svc, model)},
        "reference": None
        if ref is None
        else {
            "reference_id": reference_id(ref.binning),
            "rows": ref.n_events,
            "features": {f: ref.binning.kind(f) for f in ref.binning.features},
            # the values of each segment attribute, most frequent first
            "segments": {a: list(v.categories) for a, v in sorted(ref.binning.segments.items())},
        },
    }


@router.get("", dependencies=read, summary="List models (with a reference or a registration)")
def list_models(svc: Annotated[Service, Depends(service)]) -> list[dict[str, Any]]:
    configs = svc.models.all()
    staged = query.warming_up(svc.store)
    models = set(configs) | set(staged) | {m for m in svc.references if parse_slice_id(m) is None}
    return [_summary(svc, m, configs.get(m), staged) for m in sorted(models)]  # not the slices


@router.get(
    "/{model_id}", dependencies=read, summary="One model", responses={404: {"description": "unknown model"}}
)
def get_model(model_id: ModelId, svc: Annotated[Service, Depends(service)]) -> dict[str, Any]:
    configs = svc.models.all()
    staged = query.warming_up(svc.store)
    if model_id not in configs and model_id not in svc.references and model_id not in staged:
        raise Problem(404, f"unknown model {model_id!r}")
    return _summary(svc, model_id, configs.get(model_id), staged)


@router.put(
    "/{model_id}",
    dependencies=admin,
    summary="Register or update a model",
    responses={400: {"description": "an invalid registration (more segments than segment_attributes)"}},
)
def put_model(
    model_id: ModelId, config: ModelConfig, svc: Annotated[Service, Depends(service)]
) -> dict[str, Any]:
    limit = svc.model_settings.limits.attributes
    if len(config.segments) > limit:
        raise Problem(
            400,
            f"segments: {len(config.segments)} attributes, above the limit of {limit} (segment_attributes)",
        )
    registration = config.model_dump(by_alias=True)
    svc.models.save(model_id, registration)
    svc.model_settings[model_id] = model_settings(registration)  # stored first: a restart reads the same
    return _summary(svc, model_id, registration)


@router.put(
    "/{model_id}/reference",
    dependencies=admin,
    summary="Set the reference: upload Parquet/CSV, or name a past time range",
    description="Body: the file itself (`Content-Type: application/vnd.apache.parquet` or `text/csv`), "
    'roles as query parameters; or JSON `{"from": ..., "to": ...}` to use stored traffic.',
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ReferenceRange.model_json_schema(by_alias=True),
                    "example": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
                },
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    responses={
        400: {"description": "unusable file or range"},
        404: {"description": "a range for a model without a reference"},
        413: {"description": "body above max_reference_bytes"},
        415: {"description": "unknown content type"},
    },
)
async def put_reference(
    model_id: ModelId,
    request: Request,
    svc: Annotated[Service, Depends(service)],
    segments: Annotated[
        str, Query(max_length=1000, examples=["region,gender"], description="default: the registered ones")
    ] = "",
    prediction: Annotated[str | None, Query(max_length=256)] = None,
    label: Annotated[str | None, Query(max_length=256)] = None,
    latency: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    suffix = FILE_TYPES.get(ctype)
    if suffix is None and ctype != "application/json":
        raise Problem(415, "send the file (application/vnd.apache.parquet, text/csv) or a JSON time range")
    registered = svc.model_settings[model_id]
    roles = TableSpec(
        segments=[s for s in segments.split(",") if s] or list(registered.segments),
        prediction=prediction,
        label=label,
        latency=latency,
        positive_threshold=registered.positive_threshold,
        positive_class=registered.positive_class,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"reference{suffix or '.json'}"
        limit = svc.settings.max_reference_bytes if suffix else MAX_RANGE_BODY
        await _receive(request, path, limit)
        return await run_in_threadpool(_set_reference, svc, model_id, path, suffix is None, roles)


async def _receive(request: Request, path: Path, limit: int) -> None:
    """The body into ``path`` (never all in memory), or 413 once it exceeds ``limit`` bytes."""
    with path.open("wb") as out:
        async for chunk in body_chunks(request, limit):
            out.write(chunk)


def _set_reference(
    svc: Service, model_id: str, path: Path, is_range: bool, spec: TableSpec
) -> dict[str, Any]:
    if is_range:
        try:
            rng = ReferenceRange.model_validate(orjson.loads(path.read_bytes() or b"null"))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise Problem(400, f'expected {{"from": ..., "to": ...}}: {str(exc).splitlines()[0]}') from None
        window = TimeRange(str(rng.from_), str(rng.to))
        ref = _reference(svc, model_id)
        sketch = query.range_sketch(svc.store, ref, model_id, window.start, window.end)
        if sketch.n_events == 0:
            raise Problem(400, "no stored events of this model in that range")
        svc.store.save_reference(reference_rows(model_id, sketch, source=f"range {rng.from_} .. {rng.to}"))
    else:
        try:
            sketch, _ = load_reference(path, spec, 1000, 10, svc.model_settings[model_id].slices)
        except (TableError, ValueError) as exc:
            raise Problem(400, str(exc).replace(str(path), "upload")) from None
        svc.store.save_reference(reference_rows(model_id, sketch, source="upload"))
    svc.references.reload(svc.store)
    return _summary(svc, model_id, svc.models.all().get(model_id))


@router.get(
    "/{model_id}/references",
    dependencies=read,
    summary="Every reference the model had, oldest first, and when each applied",
    responses={404: {"description": "the model never had a reference"}},
)
def list_references(model_id: ModelId, svc: Annotated[Service, Depends(service)]) -> list[dict[str, Any]]:
    versions = svc.store.reference_versions(model_id)
    if not versions:
        raise Problem(404, query.no_reference(svc.store, model_id))
    return [
        v
        | {
            "applied_from": format_ts(v["applied_from"]),
            "applied_until": v["applied_until"] and format_ts(v["applied_until"]),
        }
        for v in versions
    ]


def _read_range(svc: Service, model_id: str, window: TimeRange, version: str | None) -> tuple[int, int]:
    """``from``/``to`` with the defaults: without ``to``, the end of the newest stored pane (or
    now, when nothing is stored); without ``from``, one window before ``to``."""
    end = window.end
    if end is None:
        newest = svc.store.newest_pane(model_id, version)
        end = int(svc.clock() * 1000) if newest is None else newest + svc.settings.pane_ms
        end = max(end, (window.start or 0) + 1)
    start = end - svc.settings.window_ms if window.start is None else window.start
    limit = svc.settings.max_range_ms
    if end - start > limit:
        raise Problem(
            400,
            f"from/to: {format_ts(start)} .. {format_ts(end)} is longer than one read may cover "
            f"({limit / 86_400_000:g} days, max_range_ms): read the period in pieces",
        )
    return start, end


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "the model has no reference"}}


ByQuery = Annotated[
    str, Query(max_length=1000, examples=["region"], description="also each slice of these attributes")
]
AgainstQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        examples=["previous", "trailing:7d", "seasonal:1w"],
        description="compare with stored traffic instead of the reference: the range before, the "
        "D before, or the same range P earlier",
    ),
]
RANGE_NOTE = (
    "Merged from the stored pane sketches. Without `from`/`to`: the last window (the window ending "
    "with the newest stored pane); with only `to`, the window before it; with only `from`, up to the "
    "newest pane. One read covers at most `max_range_ms` (7 days by default)."
)


VersionQuery = Annotated[str | None, Query(max_length=256)]


def _comparison(
    model_id: ModelId,
    svc: Annotated[Service, Depends(service)],
    window: Annotated[TimeRange, Depends()],
    version: VersionQuery = None,
    by: ByQuery = "",
    against: AgainstQuery = None,
) -> Comparison:
    """The range asked for compared with its reference: ``/drift`` as JSON, ``/report`` as a page."""
    ref = _reference(svc, model_id)
    start, end = _read_range(svc, model_id, window, version)
    limits = svc.model_settings[model_id].thresholds
    try:
        comparison = query.compare_range(svc.store, ref, model_id, start, end, version, limits, against)
    except ReferenceKindError as exc:
        raise Problem(400, f"against: {exc}") from None
    attrs = [a for a in by.split(",") if a]
    if attrs:
        try:
            pairs = query.slice_pairs(svc.store, svc.references, model_id, attrs, start, end, version)
        except KeyError as exc:
            raise Problem(
                400, f"by: the reference of {model_id!r} holds no slices by {exc.args[0]}"
            ) from None
        query.add_slices(comparison, pairs, limits)
    return comparison


@router.get(
    "/{model_id}/drift",
    dependencies=read,
    summary="Drift over a range (same JSON as `driftline stats`)",
    description=RANGE_NOTE,
    responses=NOT_FOUND,
)
def drift(comparison: Annotated[Comparison, Depends(_comparison)]) -> dict[str, Any]:
    return comparison.report


def _read_or_signed_link(
    request: Request, model_id: ModelId, svc: Annotated[Service, Depends(service)]
) -> str:
    """The read scope, or a link a notification carried (``exp`` and ``sig``, see
    ``driftline/links.py``): a browser following it sends no key."""
    params = dict(request.query_params)
    if "sig" in params and presented_key(request) is None and svc.link_key is not None:
        if verify(svc.link_key, model_id, params, time.time()):
            return "link"
        raise Problem(401, "this report link is invalid or expired: open the report with an API key")
    return require("read")(request, svc)


_read_or_signed_link.__name__ = "require_read"  # the read scope (tests/test_api.py checks every route)


@router.get(
    "/{model_id}/report",
    dependencies=[Depends(_read_or_signed_link)],
    summary="Drift over a range as one self-contained HTML page (`driftline stats --html`)",
    description=RANGE_NOTE + ' The page embeds the JSON of `/drift` (`<script id="report-data">`). A '
    "notification's link opens it without a key: it carries `exp` and `sig`, valid for that model and "
    "query until `exp`.",
    response_class=HTMLResponse,
    responses={**NOT_FOUND, 200: {"content": {"text/html": {}}, "description": "the page"}},
)
def report_page(
    model_id: ModelId, comparison: Annotated[Comparison, Depends(_comparison)], version: VersionQuery = None
) -> HTMLResponse:
    facts = [("model", model_id + (f" version {version}" if version else ""))]
    page = render_report(comparison, f"Drift report: {model_id}", facts)
    # the page fetches nothing: the browser enforces it; inline style and script only
    policy = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    headers = {"content-security-policy": policy, "x-content-type-options": "nosniff"}
    return HTMLResponse(page, headers=headers)


def _section(report: dict[str, Any], model_id: str, key: str) -> dict[str, Any]:
    return {"model_id": model_id, "range": report["range"], key: report[key]}


@router.get(
    "/{model_id}/latency",
    dependencies=read,
    summary="Latency percentiles over a range (default: the last window)",
    responses=NOT_FOUND,
)
def latency(
    model_id: ModelId,
    svc: Annotated[Service, Depends(service)],
    window: Annotated[TimeRange, Depends()],
    version: VersionQuery = None,
) -> dict[str, Any]:
    return _section(_comparison(model_id, svc, window, version).report, model_id, "latency")


@router.get(
    "/{model_id}/fairness",
    dependencies=read,
    summary="Fairness by segment over a range (default: the last window)",
    responses=NOT_FOUND,
)
def fairness(
    model_id: ModelId,
    svc: Annotated[Service, Depends(service)],
    window: Annotated[TimeRange, Depends()],
    version: VersionQuery = None,
) -> dict[str, Any]:
    return _section(_comparison(model_id, svc, window, version).report, model_id, "fairness")


@router.get("/{model_id}/metrics", dependencies=read, summary="Time series of a drift metric")
def metric_series(
    model_id: ModelId,
    svc: Annotated[Service, Depends(service)],
    window: Annotated[TimeRange, Depends()],
    metric: Annotated[str, Query(min_length=1, max_length=64, examples=["psi"])] = "psi",
    feature: Annotated[str | None, Query(max_length=256, examples=["f00_normal"])] = None,
    step: Annotated[
        int | None, Query(ge=1000, le=31 * 86_400_000, description="bucket in ms: last value per bucket")
    ] = None,
) -> dict[str, Any]:
    series = query.metric_series(svc.store, model_id, metric, feature, window.start, window.end, step)
    return {"model_id": model_id, "metric": metric, "series": series}
