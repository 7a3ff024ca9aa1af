"""Rules files: the good ones load, every bad one fails with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.alerting.config import AlertingConfig, ConfigError, default_rules, load
from driftline.alerting.engine import AlertEngine, Observation

DATA = Path(__file__).parent / "data" / "rules"


@pytest.mark.parametrize("path", sorted((DATA / "good").glob("*.yaml")), ids=lambda p: p.name)
def test_good_configs_load(path: Path) -> None:
    cfg = load(path)
    assert cfg.rules


def test_full_config_values() -> None:
    cfg = load(DATA / "good" / "full.yaml")
    psi = cfg.rules[0]
    assert (psi.for_windows, psi.severity, psi.retrain, psi.labels) == (
        2,
        "critical",
        "retrain-airflow",
        {"team": "growth"},
    )
    assert psi.matches("churn-v2", "age") and not psi.matches("fraud", "age")
    assert cfg.grouping.repeat_interval == 4 * 3600 and cfg.grouping.group_wait == 30
    hook = cfg.receiver("retrain-airflow").webhook
    assert hook is not None and hook.cooldown == 86_400 and hook.preset == "airflow"
    assert "s3cret" not in repr(cfg)  # secrets never print


@pytest.mark.parametrize("path", sorted((DATA / "bad").glob("*.yaml")), ids=lambda p: p.name)
def test_bad_configs_name_file_line_and_field(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert message.removeprefix(f"{path}:").startswith(expected), message


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load(DATA / "nope.yaml")


def test_default_rules_are_effect_sizes() -> None:
    rules = {r.metric: (r.op, r.threshold) for r in default_rules(["x"])}
    # psi and ks: each model's registered thresholds (0.2 and 0.1 unless registered otherwise)
    assert rules == {"psi": (">", None), "ks": (">", None), "disparate_impact": ("<", 0.8)}


def test_receiver_secrets_come_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "webhook-secret"
    token.write_text("whsec_from_a_file\n")
    monkeypatch.setenv("PD_KEY", "pd-from-env")
    path = tmp_path / "driftline.yaml"
    path.write_text(
        "receivers:\n"
        "  - name: oncall\n"
        "    pagerduty: {routing_key: '${env:PD_KEY}'}\n"
        "  - name: retrain\n"
        f"    webhook: {{url: 'https://ci.example/hook', secret: '${{file:{token}}}'}}\n"
        "rules: [{name: psi, metric: psi, threshold: 0.2, receivers: [oncall], retrain: retrain}]\n"
    )
    cfg = load(path)
    pd, hook = cfg.receiver("oncall").pagerduty, cfg.receiver("retrain").webhook
    assert pd is not None and pd.routing_key.get_secret_value() == "pd-from-env"
    assert hook is not None and hook.secret is not None
    assert hook.secret.get_secret_value() == "whsec_from_a_file"
    monkeypatch.delenv("PD_KEY")
    with pytest.raises(
        ConfigError, match=r"driftline.yaml:3: receivers\[0\].pagerduty.routing_key: environment"
    ):
        load(path)


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{model.name}", "{model.name} is not a field; use {model}, {version}"),
        ("{value[0]}", "{value[0]} is not a field"),
        ("{0} drifted", "{0} is not a field"),
        ("{} drifted", "{} is not a field"),
        ("{modle}", "{modle} is not a field"),
        ("{value:d}", "'{value:d}' cannot be rendered: Unknown format code 'd' for object of type 'float'"),
        ("{value:.3f} of {feature:>{width}}", "{width} is not a field"),
        ("{model!z}", "cannot be rendered: Unknown conversion specifier z"),
        ("PSI {value", "'PSI {value': expected '}' before end of string (a literal brace is written {{"),
        ("x } y", "Single '}' encountered in format string"),
    ],
)
def test_a_template_that_would_fail_when_an_alert_fires_fails_at_load(
    tmp_path: Path, template: str, error: str
) -> None:
    path = tmp_path / "driftline.yaml"
    path.write_text(
        "rules:\n"
        "  - name: psi\n"
        "    metric: psi\n"
        "    threshold: 0.2\n"
        "    annotations:\n"
        "      runbook: https://runbooks.example.com/psi\n"
        f"      summary: {template!r}\n"
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:7: rules[0].annotations.summary: Value error, "), message
    assert error in message and "\n" not in message


def test_templates_that_render_load_and_render_as_python_format_does() -> None:
    templates = {
        "summary": "{rule}: {metric} of {feature} on {model} {version} is {value:.3f} ({op} {threshold:g})",
        "percent": "{value:.1%} {{literal braces}} {model!r} {feature:>8}",
    }
    cfg = AlertingConfig.model_validate(
        {"rules": [{"name": "r", "metric": "psi", "threshold": 0.2, "annotations": templates}]}
    )
    (alert,) = AlertEngine(cfg).evaluate([Observation("m", "v", "f", "psi", 0.5, None, 0, 1)], 1.0)
    fields = {"rule": "r", "metric": "psi", "feature": "f", "model": "m", "version": "v", "value": 0.5}
    fields |= {"op": ">", "threshold": 0.2}
    assert dict(alert.annotations) == {k: t.format(**fields) for k, t in templates.items()}
