"""Out-of-time splits: months in order, disjoint, with the label-horizon gap between splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.splits import SplitError, censor_clv_labels, discounted_exposure, out_of_time_split, split_frame


def months(first: str, count: int) -> list[pd.Period]:
    return list(pd.period_range(first, periods=count, freq="M"))


def test_split_leaves_the_label_horizon_between_splits():
    split = out_of_time_split(months("2023-01", 21), horizon_months=3, validation_months=3, test_months=3, min_train_months=6)
    assert [str(m) for m in split.test_months] == ["2024-07", "2024-08", "2024-09"]
    # validation ends `horizon` months before the test starts: label windows (t, t+3] cannot overlap
    assert [str(m) for m in split.validation_months] == ["2024-02", "2024-03", "2024-04"]
    assert (split.test_months[0] - split.validation_months[-1]).n == 3
    assert (split.validation_months[0] - split.train_months[-1]).n == 3
    assert [str(m) for m in (split.train_months[0], split.train_months[-1])] == ["2023-01", "2023-11"]
    assert split.warnings == ()


@pytest.mark.parametrize("horizon", [1, 3, 6])
def test_split_months_are_disjoint_ordered_and_no_label_window_overlaps(horizon):
    split = out_of_time_split(months("2022-01", 36), horizon_months=horizon, validation_months=2, test_months=4, min_train_months=6)
    train, valid, test = (set(s) for s in (split.train_months, split.validation_months, split.test_months))
    assert not (train & valid or valid & test or train & test)
    assert max(train) < min(valid) and max(valid) < min(test)
    # the label window of the last train month ends at or before the first validation month (and so on)
    assert max(train) + horizon <= min(valid)
    assert max(valid) + horizon <= min(test)
    assert len(split.test_months) == 4 and len(split.validation_months) == 2


def test_short_history_shortens_only_the_train_validation_gap_and_warns():
    # a 12-month CLV horizon on 24 labeled months: the full gaps would leave no training months
    split = out_of_time_split(months("2023-01", 24), horizon_months=12, validation_months=3, test_months=3, min_train_months=6)
    assert split.gap_validation_test == 12
    assert (split.test_months[0] - split.validation_months[-1]).n == 12
    assert len(split.train_months) == 6
    assert split.gap_train_validation == (split.validation_months[0] - split.train_months[-1]).n < 12
    assert split.warnings and "shortened" in split.warnings[0]


def test_too_short_history_raises_naming_the_months_needed():
    # 3 test + 3-month gap + 1 validation month right after 6 training months = 12 labeled months at the least
    with pytest.raises(SplitError, match="needs at least 12 labeled as_of months"):
        out_of_time_split(months("2023-01", 11), horizon_months=3, validation_months=3, test_months=3, min_train_months=6)


def test_fewer_validation_months_before_giving_up():
    split = out_of_time_split(months("2023-01", 12), horizon_months=3, validation_months=3, test_months=3, min_train_months=6)
    assert split.strategy == "fewer_validation_months" and len(split.validation_months) == 1
    assert (split.test_months[0] - split.validation_months[-1]).n == 3  # the gap before test stays whole
    assert "1 validation month(s) instead of 3" in split.choice


def test_censored_windows_fit_an_18_month_history_with_a_9_month_horizon():
    # 18 months of data: the as_of months with a complete 9-month label are the first 9
    labeled = months("2024-07", 9)
    with pytest.raises(SplitError, match=r"needs at least 18 labeled as_of months \(27 months of data\)"):
        out_of_time_split(labeled, horizon_months=9)
    split = out_of_time_split(labeled, horizon_months=9, allow_censored=True)
    assert split.censored and split.strategy == "censored"
    assert len(split.train_months) >= 6 and split.train_months[-1] < split.validation_months[0] < split.test_months[0]
    assert split.test_months[-1] == labeled[-1]
    assert "CENSORED" in split.choice and split.warnings
    with pytest.raises(SplitError, match=r"at least 8 labeled as_of months \(17 months of data\) with censored"):
        out_of_time_split(months("2024-07", 7), horizon_months=9, allow_censored=True)


def test_censored_labels_read_nothing_after_the_cutoff():
    # one customer, monthly revenue 10, 20, 30, ... ; no discounting
    frame = pd.DataFrame({"customer_id": 1, "as_of": pd.date_range("2024-01-31", periods=8, freq="ME"),
                          "net_revenue_1m": [10.0, 20, 30, 40, 50, 60, 70, 80]})
    rows = frame.iloc[:4]
    values, exposure = censor_clv_labels(frame, rows, cutoff=pd.Period("2024-04", "M"), horizon_months=2, annual_rate=0.0)
    # as_of Jan: Feb + Mar (2 months); Feb: Mar + Apr; Mar: Apr only (cut); Apr: nothing
    assert values.tolist() == [50.0, 70.0, 40.0, 0.0] and exposure.tolist() == [2, 2, 1, 0]
    changed = frame.assign(net_revenue_1m=frame["net_revenue_1m"].where(frame["as_of"] <= "2024-04-30", 1e9))
    assert censor_clv_labels(changed, rows, cutoff=pd.Period("2024-04", "M"), horizon_months=2, annual_rate=0.0)[0].tolist() == values.tolist()
    assert discounted_exposure(np.array([0, 1, 12]), 0.0).tolist() == [0.0, 1.0, 12.0]


def test_split_frame_drops_the_gap_months():
    frame = pd.DataFrame({"customer_id": 1, "as_of": pd.date_range("2023-01-31", periods=21, freq="ME")})
    split = out_of_time_split(frame["as_of"], horizon_months=3, validation_months=3, test_months=3, min_train_months=6)
    train, valid, test = split_frame(frame, split)
    assert (len(train), len(valid), len(test)) == (11, 3, 3)
    assert len(frame) - len(train) - len(valid) - len(test) == 4  # two gaps of 2 skipped months
