"""Significance thresholds in alert rules (threshold: auto) and the dataset-level metrics."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError
from scipy import stats as sps

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import AlertEngine, Observation
from driftline.cli._args import add_threshold_args, thresholds
from driftline.detectors.profile import ModelRegistry, ModelSettings, Thresholds
from driftline.storage.codec import model_settings


def rules(*rules: dict) -> AlertingConfig:
    return AlertingConfig.model_validate({"rules": list(rules)})


def window(end: int, psi: float, n_ref: int, n_cur: int, dof: int = 9) -> list[Observation]:
    """A window's psi row of feature age and the psi_dof row that carries its sample sizes."""
    return [
        Observation("churn", "v1", "age", "psi", psi, None, end - 60_000, end, 50_000, 60_000),
        Observation("churn", "v1", "age", "psi_dof", dof, None, end - 60_000, end, n_ref, n_cur),
    ]


def test_rules_accept_auto_and_the_dataset_metrics() -> None:
    cfg = rules(
        {"name": "p", "metric": "psi", "threshold": "auto", "alpha": 0.01},
        {"name": "k", "metric": "prediction_ks", "threshold": "auto"},
        {"name": "share", "metric": "drifted_share", "op": ">=", "threshold": 0.5},
        {"name": "gone", "metric": "missing_features", "threshold": 0},
        {"name": "new", "metric": "new_features", "threshold": 0},
    )
    assert [(r.threshold, r.alpha) for r in cfg.rules[:2]] == [("auto", 0.01), ("auto", 0.05)]
    assert cfg.rules[2].threshold == 0.5
    with pytest.raises(ValidationError, match="auto is for psi"):
        rules({"name": "n", "metric": "null_rate", "threshold": "auto"})
    with pytest.raises(ValidationError):
        rules({"name": "p", "metric": "psi", "threshold": "auto", "alpha": 1.5})
    with pytest.raises(ValidationError, match="required for metric drifted_share"):
        rules({"name": "s", "metric": "drifted_share"})


def test_auto_psi_fires_above_the_critical_value_of_the_window_sample_sizes() -> None:
    engine = AlertEngine(rules({"name": "p", "metric": "psi", "threshold": "auto", "alpha": 0.05}))
    critical = sps.chi2.ppf(0.95, 9) * (1 / 1000 + 1 / 500)  # 0.0507: the feature's own counts
    assert engine.evaluate(window(60_000, critical * 0.9, 1000, 500), 1.0) == []
    [alert] = engine.evaluate(window(120_000, critical * 1.1, 1000, 500), 2.0)
    assert alert.status == "firing" and alert.op == ">"
    assert alert.threshold == pytest.approx(critical, rel=1e-12)
    # the same PSI over large samples is far above their critical value; small ones hide it
    assert engine.evaluate(window(180_000, 0.03, 100_000, 100_000), 3.0) == []  # still firing
    [resolved] = engine.evaluate(window(240_000, 0.03, 300, 300), 4.0)
    assert resolved.status == "resolved"
    assert resolved.threshold == pytest.approx(sps.chi2.ppf(0.95, 9) * (2 / 300), rel=1e-12)
    # rows without psi_dof (stored before it was): no verdict rather than a wrong one
    assert engine.evaluate(window(300_000, 9.0, 1000, 500)[:1], 5.0) == []


def test_auto_ks_compares_the_bh_adjusted_p_value_with_alpha() -> None:
    engine = AlertEngine(rules({"name": "k", "metric": "ks", "threshold": "auto", "alpha": 0.05}))
    rows = [
        Observation("churn", "v1", f, "ks", 0.05, p, 0, 60_000, 1000, 1000)
        for f, p in (("a", 0.01), ("b", 0.02), ("c", 0.04), ("d", 0.5))
    ]
    fired = engine.evaluate(rows, 1.0)
    # BH over 4 tests: 0.04, 0.04, 0.0533, 0.5: a and b (c, 0.04 alone, is not)
    assert sorted(a.feature for a in fired) == ["a", "b"]
    assert {(a.op, a.threshold) for a in fired} == {("<", 0.05)}
    assert fired[0].value == pytest.approx(0.04)


def test_a_model_registered_with_psi_alpha_makes_rules_without_threshold_auto() -> None:
    models = ModelRegistry()
    models["churn"] = model_settings({"thresholds": {"psi_alpha": 0.05}})
    assert models["churn"].thresholds == Thresholds(psi_alpha=0.05)
    engine = AlertEngine(rules({"name": "p", "metric": "psi"}), models=models)
    [alert] = engine.evaluate(window(60_000, 0.06, 1000, 500), 1.0)  # 0.06 > 0.0507, < 0.2
    assert alert.threshold == pytest.approx(sps.chi2.ppf(0.95, 9) * (1 / 1000 + 1 / 500))
    models["churn"] = ModelSettings()  # effect size again
    assert (
        AlertEngine(rules({"name": "p", "metric": "psi"}), models=models).evaluate(
            window(60_000, 0.06, 1000, 500), 1.0
        )
        == []
    )


def test_cli_auto_thresholds() -> None:
    parser = argparse.ArgumentParser()
    add_threshold_args(parser, significance=True)
    args = parser.parse_args(["--psi-threshold", "auto", "--alpha", "0.01", "--dataset-drift", "0.3"])
    assert thresholds(args) == Thresholds(psi_alpha=0.01, dataset_drift=0.3)
    # an effect size given on the command line wins over a model's registered significance
    args = parser.parse_args(["--psi-threshold", "0.3", "--ks-threshold", "auto"])
    assert thresholds(args, Thresholds(psi_alpha=0.05)) == Thresholds(psi=0.3, ks_alpha=0.05)
    with pytest.raises(SystemExit):
        parser.parse_args(["--psi-threshold", "often"])
