"""Receivers only format and send, and say whether a failure is worth retrying.

* PagerDuty Events API v2: one event per alert, ``dedup_key`` = the alert's episode, so the
  resolve closes the incident its trigger opened and a repeated trigger is idempotent.
* Slack incoming webhook: ``text`` fallback plus Block Kit blocks, one message per group.
* Webhook: Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``) on a CloudEvents 1.0
  structured body, or shaped for Airflow, Kubeflow Pipelines, GitHub ``repository_dispatch`` or
  Argo Events when a retraining preset is configured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from driftline.alerting.config import ReceiverConfig, WebhookConfig
from driftline.contract import format_ts
from driftline.detectors.profile import format_movers
from driftline.detectors.slice_ids import parse_slice_id
from driftline.links import ReportLinks
from driftline.report_html import feature_id

PD_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


@dataclass(frozen=True)
class Result:
    ok: bool
    retryable: bool
    status: int | None  # HTTP status, None when no response arrived
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature of ``id.timestamp.body`` with a ``whsec_<base64>`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: float = 300.0) -> bool:
    """For receivers: check a driftline webhook's signature and freshness."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts = h["webhook-id"], int(h["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(expected, s) for s in h.get("webhook-signature", "").split())


def _iso(ts: float | None) -> str | None:
    return None if ts is None else format_ts(ts * 1000)


def _window(alert: dict[str, Any]) -> str:
    start = _iso(alert["window_start"] / 1000)
    end = _iso(alert["window_end"] / 1000)
    return f"{start} – {end}"


def _summary(alert: dict[str, Any]) -> str:
    default = (
        f"{alert['rule']}: {alert['metric']} of {alert['feature'] or 'model'} on {alert['model']} is "
        f"{alert['value']:.4g} ({alert['op']} {alert['threshold']:g})"
    )
    return str(alert["annotations"].get("summary") or default)


def report_url(links: ReportLinks | None, alert: Mapping[str, Any], now: float) -> str | None:
    """The alert's HTML report (``GET /v1/models/{id}/report``) over its window and version, at
    the feature's section, signed to open without an API key; a slice's alert opens its model's
    report with the slices of its attribute. None without a public base URL."""
    if links is None or alert.get("window_start") is None or alert.get("window_end") is None:
        return None
    model, params, fragment = alert["model"], {}, ""
    parsed = parse_slice_id(model)
    if parsed:  # the model's report with this attribute's slices, opened at this one
        model, params["by"] = parsed[0], parsed[1]
        fragment = "#slice=" + quote(f"{parsed[1]}={parsed[2]}", safe="")
    params = {"from": format_ts(alert["window_start"]), "to": format_ts(alert["window_end"])} | params
    if alert.get("version"):
        params["version"] = alert["version"]
    feature = alert.get("feature") or ""
    if not fragment and feature and "=" not in feature:  # a fairness group has no section of its own
        fragment = f"#{feature_id(feature)}"
    return links.url(model, params, now, fragment)


def with_report_url(alert: dict[str, Any], links: ReportLinks | None, now: float) -> dict[str, Any]:
    url = report_url(links, alert, now)
    return alert if url is None else alert | {"report_url": url}


def pagerduty_event(routing_key: str, alert: dict[str, Any]) -> dict[str, Any]:
    action = "trigger" if alert["status"] == "firing" else "resolve"
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": alert["episode"],
    }
    if action == "trigger":
        event["payload"] = {
            "summary": _summary(alert)[:1024],
            "source": f"driftline/{alert['model']}",
            "severity": PD_SEVERITY[alert["severity"]],
            "component": alert["feature"] or alert["model"],
            "group": alert["model"],
            "class": alert["metric"],
            "timestamp": _iso(alert["starts_at"]),
            "custom_details": {
                k: alert[k]
                for k in (
                    "rule",
                    "model",
                    "version",
                    "feature",
                    "metric",
                    "value",
                    "op",
                    "threshold",
                    "window_start",
                    "window_end",
                )
            },
        }
        if explain := alert.get("explain"):  # what moved the feature: its top PSI contributors
            event["payload"]["custom_details"]["explain"] = explain
        links = [{"href": alert["report_url"], "text": "drift report"}] if alert.get("report_url") else []
        if runbook := alert["annotations"].get("runbook"):
            links.append({"href": runbook, "text": "runbook"})
        if links:
            event["links"] = links
    return event


def _slack_escape(text: str) -> str:
    """mrkdwn text with ``&``, ``<`` and ``>`` escaped: ``< 12.3`` is a value range, not a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, text: str) -> str:
    """``<url|text>`` as Slack's mrkdwn reads it: ``&``, ``<`` and ``>`` escaped (a ``|`` or ``>``
    of a name would end the link early)."""
    escaped = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "%7C")
    return f"<{escaped}|{text}>"


def slack_message(alerts: list[dict[str, Any]], grafana_url: str | None) -> dict[str, Any]:
    firing = [a for a in alerts if a["status"] == "firing"]
    resolved = [a for a in alerts if a["status"] == "resolved"]
    head = alerts[0]
    title = (f"[FIRING:{len(firing)}] " if firing else "[RESOLVED] ") + f"{head['rule']} on {head['model']}"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    for a in alerts[:20]:  # Slack allows 50 blocks; keep messages readable
        icon = ":red_circle:" if a["status"] == "firing" else ":large_green_circle:"
        fields = [
            f"*Model*\n{a['model']} {a['version']}".strip(),
            f"*Feature*\n{a['feature'] or '(model)'}",
            f"*{a['metric']}*\n{a['value']:.4g} ({a['op']} {a['threshold']:g})",
            f"*Window*\n{_window(a)}",
        ]
        text = f"{icon} {_summary(a)}"
        if a.get("explain"):
            text += f"\ntop movers: {_slack_escape(format_movers(a['explain']))}"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": text[:3000]},
                "fields": [{"type": "mrkdwn", "text": f} for f in fields],
            }
        )
        links = [_slack_link(a["report_url"], "report")] if a.get("report_url") else []
        if grafana_url:
            query = urlencode({"var-model": a["model"], "var-feature": a["feature"]})
            links.append(_slack_link(f"{grafana_url}/d/driftline-feature-drift?{query}", "dashboard"))
        if runbook := a["annotations"].get("runbook"):
            links.append(_slack_link(runbook, "runbook"))
        if links:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    text = f"{title}: " + "; ".join(_summary(a) for a in (firing or resolved)[:5])
    return {"text": text[:3000], "blocks": blocks}


def cloudevent(entry_id: str, kind: str, alert: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": f"io.driftline.{kind}.{alert['status']}",
        "source": f"/driftline/models/{alert['model']}",
        "id": entry_id,
        "time": _iso(now),
        "subject": alert["feature"] or alert["model"],
        "datacontenttype": "application/json",
        "data": alert,
    }


def webhook_request(
    cfg: WebhookConfig, entry_id: str, kind: str, alert: dict[str, Any], now: float
) -> Request:
    """The HTTP request for a generic or retraining webhook, signed when a secret is set."""
    event = cloudevent(entry_id, "retrain" if kind == "retrain" else "drift", alert, now)
    p = cfg.params
    url = cfg.url.rstrip("/")
    match cfg.preset:
        case "airflow":
            url += f"/api/v1/dags/{p['dag_id']}/dagRuns"
            body: Any = {
                "dag_run_id": f"driftline-{entry_id}",
                "conf": {"driftline": event, **p.get("conf", {})},
            }
        case "kubeflow":
            url += "/apis/v2beta1/runs"
            body = {
                "display_name": f"driftline retrain {alert['model']} {entry_id[:8]}",
                "pipeline_version_reference": {
                    k: p[k] for k in ("pipeline_id", "pipeline_version_id") if k in p
                },
                "runtime_config": {
                    "parameters": {
                        **p.get("parameters", {}),
                        "driftline_event_id": entry_id,
                        "model": alert["model"],
                    }
                },
            }
            if "experiment_id" in p:
                body["experiment_id"] = p["experiment_id"]
        case "github":
            url += f"/repos/{p['repository']}/dispatches"
            body = {
                "event_type": p.get("event_type", "driftline-retrain"),
                "client_payload": {
                    "id": entry_id,
                    "model": alert["model"],
                    "rule": alert["rule"],
                    "feature": alert["feature"],
                    "value": alert["value"],
                },
            }
        case _:  # cloudevents, argo (an Argo Events webhook event source takes the event as is)
            body = event
    data = orjson.dumps(body)
    headers = {"content-type": "application/json", "user-agent": "driftline"}
    if cfg.preset == "cloudevents":
        headers["content-type"] = "application/cloudevents+json"
    if cfg.preset == "github":
        headers["accept"] = "application/vnd.github+json"
    if cfg.token is not None:
        headers["authorization"] = f"Bearer {cfg.token.get_secret_value()}"
    if cfg.secret is not None:
        ts = int(time.time())  # wall time: receivers check freshness against their own clock
        headers |= {
            "webhook-id": entry_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(cfg.secret.get_secret_value(), entry_id, ts, data),
        }
    return Request(url, data, headers)


def build_requests(
    cfg: ReceiverConfig,
    entry_id: str,
    kind: str,
    payload: dict[str, Any],
    now: float,
    links: ReportLinks | None = None,
) -> Request:
    """The request of a queued notification; with ``links`` (the API's public base URL) each
    alert carries ``report_url``, its HTML report, which Slack and PagerDuty link."""
    if cfg.pagerduty is not None:
        alert = with_report_url(payload["alert"], links, now)
        event = pagerduty_event(cfg.pagerduty.routing_key.get_secret_value(), alert)
        return Request(cfg.pagerduty.url, orjson.dumps(event), {"content-type": "application/json"})
    if cfg.slack is not None:
        msg = slack_message(
            [with_report_url(a, links, now) for a in payload["alerts"]], cfg.slack.grafana_url
        )
        return Request(
            cfg.slack.webhook_url.get_secret_value(), orjson.dumps(msg), {"content-type": "application/json"}
        )
    assert cfg.webhook is not None
    if "alert" in payload:
        return webhook_request(
            cfg.webhook, entry_id, kind, with_report_url(payload["alert"], links, now), now
        )
    alerts = [with_report_url(a, links, now) for a in payload["alerts"]]  # a group: one CloudEvent of all
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    head = alerts[0]
    group = {
        "status": status,
        "model": head["model"],
        "rule": head["rule"],
        "feature": "",
        "value": 0.0,
        "alerts": alerts,
    }
    return webhook_request(cfg.webhook, entry_id, kind, group, now)


Transport = Callable[[Request, float], httpx.Response]


def http_transport(client: httpx.Client | None = None) -> Transport:
    c = client or httpx.Client()

    def send(req: Request, timeout: float) -> httpx.Response:
        return c.post(req.url, content=req.body, headers=req.headers, timeout=timeout)

    return send


def deliver(cfg: ReceiverConfig, req: Request, transport: Transport) -> Result:
    """Send one request; classify the outcome. 2xx ok; 408/429/5xx and network errors retry."""
    try:
        resp = transport(req, cfg.timeout)
    except httpx.TimeoutException as exc:
        return Result(False, True, None, f"timeout: {exc}")
    except httpx.TransportError as exc:
        return Result(False, True, None, f"connection failed: {exc}")
    body = resp.text[:500]
    if 200 <= resp.status_code < 300:
        if cfg.slack is not None and body.strip() not in ("", "ok"):
            return Result(False, False, resp.status_code, f"slack said {body!r}")
        return Result(True, False, resp.status_code, body)
    retryable = resp.status_code in (408, 429) or resp.status_code >= 500
    return Result(False, retryable, resp.status_code, body, _retry_after(resp.headers.get("retry-after")))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(
                0.0,
                datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC).timestamp()
                - time.time(),
            )
        except ValueError:
            return None
