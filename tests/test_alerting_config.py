"""Rules files: the good ones load, every bad one fails with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.alerting.config import ConfigError, default_rules, load

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
