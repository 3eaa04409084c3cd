"""Known-answer cases for the evaluation metrics, retention profit and model card."""

from dataclasses import dataclass

import numpy as np
import pytest

from training.evaluation import (
    binary_metrics,
    clv_metrics,
    decile_mape,
    expected_calibration_error,
    normalized_gini,
    retention_profit,
)
from training.model_card import render_model_card


@dataclass(frozen=True)
class Economics:
    """Stands in for custbase.config.RetentionEconomics (same fields)."""

    contact_cost: float = 1.0
    incentive_cost: float = 10.0
    acceptance_rate: float = 0.5


BINARY_KEYS = {
    "roc_auc", "pr_auc", "top_decile_lift", "precision_top_5pct", "recall_top_5pct",
    "precision_top_10pct", "recall_top_10pct", "brier", "log_loss", "ece",
}


# ------------------------------------------------------------------------------------------ binary


def test_perfect_scores_give_auc_one_and_full_top_decile():
    """20 positives in 100 rows ranked first: the top 10% are all positives, so lift = 1 / 0.2."""
    y = np.r_[np.ones(20), np.zeros(80)]
    p = np.linspace(1, 0, 100)
    m = binary_metrics(y, p)
    assert set(m) == BINARY_KEYS
    assert m["roc_auc"] == pytest.approx(1.0) and m["pr_auc"] == pytest.approx(1.0)
    assert m["top_decile_lift"] == pytest.approx(5.0)
    assert m["precision_top_5pct"] == 1.0 and m["recall_top_5pct"] == pytest.approx(5 / 20)
    assert m["precision_top_10pct"] == 1.0 and m["recall_top_10pct"] == pytest.approx(10 / 20)


def test_constant_predictor_has_lift_one_whatever_the_row_order():
    """Tied scores count at their expected share: a constant score selects at the base rate."""
    y = np.r_[np.ones(30), np.zeros(70)]  # positives first, so a naive sort would flatter the predictor
    m = binary_metrics(y, np.full(100, 0.3))
    assert m["top_decile_lift"] == pytest.approx(1.0)
    assert m["precision_top_5pct"] == pytest.approx(0.3)
    assert m["roc_auc"] == pytest.approx(0.5)
    assert m["ece"] == pytest.approx(0.0)  # the constant equals the base rate


def test_brier_and_log_loss_known_values():
    """p = 0.8 for one positive and one negative: Brier (0.04 + 0.64) / 2, log-loss -(ln 0.8 + ln 0.2) / 2."""
    m = binary_metrics([1, 0], [0.8, 0.8])
    assert m["brier"] == pytest.approx(0.34)
    assert m["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.2)) / 2)


def test_ece_of_perfectly_calibrated_bins_is_zero():
    """Each probability level holds exactly that share of positives."""
    p = np.repeat([0.1, 0.5, 0.9], 10)
    y = np.r_[np.ones(1), np.zeros(9), np.ones(5), np.zeros(5), np.ones(9), np.zeros(1)]
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_confidently_wrong_model():
    """Everyone predicted 0.5 but everyone is positive: one bin with gap 0.5."""
    assert expected_calibration_error(np.ones(40), np.full(40, 0.5)) == pytest.approx(0.5)


def test_ece_weights_bins_by_their_rows():
    """Two equal-frequency bins: gaps |0 - 0.2| and |1 - 0.6|, each with half the rows -> 0.3."""
    p = np.r_[np.full(5, 0.2), np.full(5, 0.6)]
    y = np.r_[np.zeros(5), np.ones(5)]
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.3)


def test_binary_metrics_refuse_nan_and_non_binary_labels():
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1, np.nan], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 2], [0.1, 0.2])


# ------------------------------------------------------------------------------------------ CLV


def test_normalized_gini_perfect_reversed_and_constant():
    """Ordered by itself gives 1, by its reverse -1, a constant prediction (all tied) exactly 0."""
    y = np.array([0, 0, 0, 5, 10, 0, 200, 35, 0, 1.5])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, 2 * y + 7) == pytest.approx(1.0)  # only the order matters
    assert normalized_gini(y, -y) == pytest.approx(-1.0)
    assert normalized_gini(y, np.full(len(y), 3.0)) == pytest.approx(0.0)


def test_normalized_gini_of_all_zero_actuals_is_nan():
    """No value to order: the ratio is undefined."""
    assert np.isnan(normalized_gini(np.zeros(5), np.arange(5.0)))


def test_decile_mape_hand_computed():
    """One row per decile: only the 20-vs-25 decile is off (0.2); the decile with actual 0 is skipped -> 0.2 / 9."""
    y_pred = np.arange(10, 101, 10, dtype=float)
    y_true = np.array([10, 25, 30, 40, 50, 60, 70, 80, 90, 0], dtype=float)
    assert decile_mape(y_true, y_pred) == pytest.approx(0.2 / 9)


def test_decile_mape_averages_within_deciles():
    """Two rows per decile: bottom decile predicts (1+3)/2 = 2 against actual (2+4)/2 = 3 -> 1/3 / 10 overall."""
    y_pred = np.repeat(np.arange(1.0, 11.0), 2) * 10
    y_pred[:2] = [1, 3]
    y_true = y_pred.copy()
    y_true[:2] = [2, 4]
    assert decile_mape(y_true, y_pred) == pytest.approx((1 / 3) / 10)


def test_clv_metrics_keys_and_errors():
    """Predictions off by +1, +1, -2: MAE 4/3, RMSE sqrt(6/3); same order, so Spearman and Gini are 1."""
    m = clv_metrics([0.0, 10.0, 20.0], [1.0, 11.0, 18.0])
    assert set(m) == {"normalized_gini", "decile_mape", "spearman", "mae", "rmse"}
    assert m["mae"] == pytest.approx(4 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(2.0))
    assert m["spearman"] == pytest.approx(1.0)
    assert m["normalized_gini"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ retention profit


def test_retention_profit_five_customers_hand_computed():
    """Contact order by p x clv = rows 1, 4, 0, 3, 2 (150, 100, 90, 16, 10).

    Per contact (f=1, d=10, a=0.5, non-churners always take the incentive):
    churner: 0.5 x (clv - 10) - 1; non-churner: -10 - 1.
    row 1: -11, row 4: -11, row 0: 0.5 x 90 - 1 = 44, row 3: 0.5 x 10 - 1 = 4, row 2: -11.
    Cumulative 0, -11, -22, 22, 26, 15: best 26 after contacting 4 of 5 customers.
    """
    p = [0.9, 0.5, 0.2, 0.8, 0.1]
    clv = [100, 300, 50, 20, 1000]
    churned = [1, 0, 0, 1, 0]
    result = retention_profit(p, clv, churned, Economics(), n_points=6)
    assert result["best_profit"] == pytest.approx(26.0)
    assert result["contact_share"] == pytest.approx(0.8)
    assert result["contacts"] == 4
    assert result["profit_contact_all"] == pytest.approx(15.0)
    assert result["best_profit_per_customer"] == pytest.approx(26.0 / 5)
    assert [s for s, _ in result["profit_curve"]] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert [v for _, v in result["profit_curve"]] == pytest.approx([0, -11, -22, 22, 26, 15])


def test_retention_profit_contacts_nobody_when_every_contact_loses():
    """Incentive larger than any CLV: every contact loses money, so the best is to contact no one."""
    result = retention_profit([0.9, 0.8], [5.0, 5.0], [1, 1], Economics(incentive_cost=50.0))
    assert result["best_profit"] == 0.0 and result["contact_share"] == 0.0


def test_retention_profit_reads_an_optional_non_churner_acceptance_rate():
    """With half the non-churners taking the incentive, each costs 0.5 x 10 + 1 = 6."""

    @dataclass(frozen=True)
    class WithNonChurnerRate(Economics):
        non_churner_acceptance_rate: float = 0.5

    result = retention_profit([0.9, 0.5], [100.0, 300.0], [1, 0], WithNonChurnerRate(), n_points=3)
    assert [v for _, v in result["profit_curve"]] == pytest.approx([0, -6, 38])


def test_retention_profit_refuses_bad_economics():
    with pytest.raises(ValueError, match="acceptance_rate"):
        retention_profit([0.5], [1.0], [1], Economics(acceptance_rate=1.5))


# ------------------------------------------------------------------------------------------ model card


def test_model_card_renders_all_sections_and_the_ratio_to_oracle():
    card = {
        "model": {"name": "churn", "version": "3", "run_id": "abc123"},
        "beats_baseline": True,
        "intended_use": "Rank active personal customers by 3-month churn risk for retention campaigns.",
        "data": {"feature_set": {"name": "customer_month_v1", "version": 1, "columns": ["a", "b"]},
                 "rows": {"train": 1000, "test": 200}, "as_of_min": "2023-06-30", "as_of_max": "2025-09-30",
                 "fingerprint": "deadbeef"},
        "splits": {"train": ["2023-06-30", "2024-06-30"], "validation": ["2024-10-31"], "test": ["2025-03-31"],
                   "gap_months": 3},
        "metrics": {"test": {"roc_auc": 0.85, "brier": 0.05}, "baseline": {"roc_auc": 0.80, "brier": 0.06},
                    "oracle": {"roc_auc": 0.90, "brier": 0.04}},
        "primary_metric": "roc_auc",
        "calibration": {"method": "isotonic", "before": {"brier": 0.07, "ece": 0.03}, "after": {"brier": 0.05, "ece": 0.01}},
        "retention_profit": {"best_profit": 12345.0, "contact_share": 0.12, "contacts": 120, "profit_curve": [(0, 0)]},
        "top_drivers": {"aum_change_ratio_3m": 0.41, "complaints_3m": 0.2},
        "limitations": ["Trained on a simulated bank."],
    }
    text = render_model_card(card)
    for heading in ("# Model card: churn", "## Intended use", "## Data", "## Out-of-time splits", "## Test metrics",
                    "## Calibration", "## Retention profit", "## Top drivers", "## Limitations"):
        assert heading in text
    assert "| **roc_auc** | 0.8500 | 0.8000 | 0.9000 | 0.9444 |" in text  # 0.85 / 0.90
    assert "12.0%" in text and "`aum_change_ratio_3m`" in text
    assert "2023-06 to 2024-06" in text


def test_model_card_tolerates_missing_sections_and_warns_when_baseline_wins():
    text = render_model_card({"model": {"name": "clv"}, "beats_baseline": False, "metrics": {"test": {"mae": 3.0}}})
    assert "does NOT beat its baseline" in text
    assert "## Retention profit" not in text and "## Calibration" not in text
    assert "| mae | 3.0000 |" in text
    assert render_model_card({}).startswith("# Model card: unnamed model")


def test_model_card_gap_text_follows_the_split_it_describes():
    full = render_model_card({"splits": {"train": ["2023-01"], "test": ["2025-01"], "horizon_months": 3,
                                         "gap_train_validation": 3, "gap_validation_test": 3}})
    assert "no label windows overlap" in full
    shortened = render_model_card({"splits": {"train": ["2023-01"], "test": ["2025-01"], "horizon_months": 12,
                                              "gap_train_validation": 2, "gap_validation_test": 12}})
    assert "no label windows overlap" not in shortened  # it would contradict the shortened gap
    assert "Gap train -> validation: 2 months, shortened from the 12-month label horizon" in shortened
    assert "Gap validation -> test: 12 months" in shortened


@pytest.mark.parametrize("model", ["churn", "upgrade", "clv"])
def test_every_model_states_its_use_out_of_scope_uses_and_limitations(model):
    from training.spec import get_spec

    spec = get_spec(model)
    text = render_model_card({"model": {"name": model, "task": spec.description}, "intended_use": spec.intended_use,
                              "out_of_scope": spec.out_of_scope, "limitations": spec.limitations})
    for heading in ("## Intended use", "## Out-of-scope uses", "## Limitations"):
        assert heading in text
    assert spec.intended_use and spec.intended_use != spec.description  # "Intended use" is not the task again
