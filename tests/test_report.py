"""The HTML base report: its analysis functions on hand-made frames, and the page it builds."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from serving import report
from serving.monitoring import DriftReport

TIERS = ("mass", "affluent", "high_net_worth", "private")


def _month(customers, tiers, as_of):
    return pd.DataFrame({"customer_id": customers, "value_tier": tiers, "as_of": pd.Timestamp(as_of)})


def test_migration_matrix_counts_moves_exits_and_ignores_joiners():
    before = _month([1, 2, 3, 4, 5], ["mass", "mass", "affluent", "affluent", "private"], "2024-01-31")
    after = _month([1, 2, 3, 5, 6], ["mass", "affluent", "mass", "private", "mass"], "2024-02-29")
    matrix = report.migration_matrix(before, after, TIERS)
    assert matrix.loc["mass", "mass"] == 1 and matrix.loc["mass", "affluent"] == 1
    assert matrix.loc["affluent", "mass"] == 1 and matrix.loc["affluent", report.EXITED] == 1
    assert matrix.to_numpy().sum() == 5  # customer 6 joined: not in the earlier month
    assert report.migration_summary(matrix) == {"upgrades": 1, "downgrades": 1, "stayed": 2, report.EXITED: 1}


def test_concentration_known_answers():
    values = [0, 0, 0, 0, 0, 0, 0, 0, 0, 100]
    assert report.top_share(values, 0.1) == 1.0
    assert report.top_share([1] * 10, 0.1) == pytest.approx(0.1)
    x, y = report.lorenz_curve([1, 1, 2])
    assert y.tolist() == pytest.approx([0, 0.25, 0.5, 1.0])
    assert x.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def base_frame(customers=60, months=4, seed=0):
    """Customer-months with every column the report reads: AUM drifts up, so tiers move."""
    rng = np.random.default_rng(seed)
    rows = []
    bounds = Config().value_tiers.lower_bounds
    for m, as_of in enumerate(pd.date_range("2024-01-31", periods=months, freq="ME")):
        ids = np.arange(1, customers + 1 - (months - m))  # a few customers join each month
        aum = np.exp(rng.normal(10 + 0.1 * m, 1.5, len(ids)))
        rows.append(pd.DataFrame({
            "customer_id": ids, "as_of": as_of, "aum_month_end": aum,
            "value_tier": np.asarray(TIERS)[np.searchsorted(bounds, aum, side="right") - 1],
            "net_revenue_12m": aum * 0.01, "product_count": rng.integers(1, 5, len(ids)),
            "months_since_last_salary": rng.choice([0.0, 1.0, np.nan], len(ids)),
            "digital_share_3m": rng.uniform(0, 1, len(ids)), "months_since_last_activity": rng.choice([0.0, 2.0], len(ids)),
            "is_dormant": rng.choice([0, 1], len(ids), p=[0.9, 0.1]),
        }))
    return pd.concat(rows, ignore_index=True)


def scores_of(frame):
    last = frame[frame["as_of"] == frame["as_of"].max()]
    rng = np.random.default_rng(1)
    churn = rng.uniform(0, 0.6, len(last))
    clv = last["net_revenue_12m"].to_numpy()
    return pd.DataFrame({"customer_id": last["customer_id"].to_numpy(), "as_of": last["as_of"].to_numpy(),
                         "value_tier": last["value_tier"].to_numpy(), "churn_probability": churn,
                         "upgrade_probability": np.where(last["value_tier"] == "private", np.nan, rng.uniform(0, 0.4, len(last))),
                         "clv_12m": clv, "value_at_risk": churn * clv})


def test_the_page_has_every_section_with_readings_and_inline_charts_only():
    frame = base_frame()
    page = report.base_report_html(Config(), frame, scores=scores_of(frame))
    for anchor in ("tiers", "migration", "concentration", "stickiness", "value-risk", "tier-value", "scores",
                   "campaigns", "drift", "backtest"):
        assert f'<section id="{anchor}">' in page
    assert page.count('class="reading"') == 10
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 7
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing to fetch: the page is self-contained
    last, previous = "2024-04", "2024-03"
    assert f"{previous} -> {last}" in html.unescape(page)


def test_readings_are_computed_from_the_data():
    frame = base_frame()
    page = report.base_report_html(Config(), frame, scores=scores_of(frame))
    latest = frame[frame["as_of"] == frame["as_of"].max()]
    assert f"{len(latest):,} active customers" in page
    assert f"holds {report.top_share(latest['aum_month_end']):.1%} of AUM" in page


def test_a_shifted_scoring_run_is_an_alert_at_the_top_naming_the_feature():
    frame = base_frame()
    table = pd.DataFrame([{"model": "churn", "column": "txn_amount_salary_3m", "kind": "feature", "importance_rank": 4,
                           "psi": 0.61, "status": "major", "rows": 50},
                          {"model": "churn", "column": "score", "kind": "score", "importance_rank": 0, "psi": 0.02,
                           "status": "stable", "rows": 50}])
    page = report.base_report_html(Config(), frame, scores=scores_of(frame), drift=DriftReport("2024-04", table, 0.1, 0.25))
    alert = page.split('<p class="alert">')[1].split("</p>")[0]
    assert "txn_amount_salary_3m" in alert and "0.61" in alert
    assert '<td class="major">major</td>' in page


def test_missing_columns_and_months_fail_with_their_names():
    frame = base_frame()
    with pytest.raises(ValueError, match="digital_share_3m"):
        report.base_report_html(Config(), frame.drop(columns=["digital_share_3m"]))
    with pytest.raises(ValueError, match="no rows at 2030-01"):
        report.base_report_html(Config(), frame, as_of="2030-01")
