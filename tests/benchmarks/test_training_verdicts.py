"""The training loop's verdicts (benchmarks.run): the issue's limits per step, and a quality row only when the
bank was large enough for the sample to sample."""

from __future__ import annotations

from benchmarks.run import markdown, verdicts


def _loop(*, sampled: bool, peak: float = 3.0, auc_gap: float = -0.001) -> dict:
    step = lambda seconds, gib: {"seconds": seconds, "peak_gib": gib}  # noqa: E731
    return {
        "customers": 100_000, "trials": 5,
        "features_all_months": step(600, 4.0), "features_append_month": step(200, 1.5),
        "train_churn": step(900, peak), "train_clv": step(1_300, 2.0),
        "quality": {"budget_rows": 400_000, "sampled": sampled,
                    "churn_full": {"test_roc_auc": 0.80}, "churn_sampled": {"test_roc_auc": 0.80 + auc_gap},
                    "clv_full": {"test_normalized_gini": 0.99}, "clv_sampled": {"test_normalized_gini": 0.9895},
                    "churn_auc_difference": auc_gap, "clv_gini_difference": -0.0005},
    }


def test_each_limit_of_the_loop_is_judged_on_its_step():
    found = {name: (figure, met) for name, figure, _, met in verdicts({"training": {"100000": _loop(sampled=True, peak=13.0)}})}
    assert found["100,000 customers: peak memory of every training-loop step (GiB)"] == (13.0, False)
    assert found["100,000 customers: slowest training at 5 trials (min)"] == (1_300 / 60, False)
    assert found["100,000 customers: appending a month (min)"][1] and found["100,000 customers: all-months features (min)"][1]
    assert found["100,000 customers: churn test ROC-AUC, sample - full (abs)"] == (0.001, True)


def test_a_bank_within_the_budget_gives_no_quality_verdict():
    results = {"training": {"100000": _loop(sampled=False, auc_gap=0.0)}}
    assert not [name for name, *_ in verdicts(results) if "sample - full" in name]
    assert "nothing was sampled" in markdown({**results, "targets": {}})
