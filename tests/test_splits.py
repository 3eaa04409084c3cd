"""Out-of-time splits: months in order, disjoint, with the label-horizon gap between splits."""

from __future__ import annotations

import pandas as pd
import pytest

from training.splits import SplitError, out_of_time_split, split_frame


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


def test_too_short_history_raises_with_what_to_do():
    with pytest.raises(SplitError, match="too few"):
        out_of_time_split(months("2023-01", 12), horizon_months=3, validation_months=3, test_months=3, min_train_months=6)


def test_split_frame_drops_the_gap_months():
    frame = pd.DataFrame({"customer_id": 1, "as_of": pd.date_range("2023-01-31", periods=21, freq="ME")})
    split = out_of_time_split(frame["as_of"], horizon_months=3, validation_months=3, test_months=3, min_train_months=6)
    train, valid, test = split_frame(frame, split)
    assert (len(train), len(valid), len(test)) == (11, 3, 3)
    assert len(frame) - len(train) - len(valid) - len(test) == 4  # two gaps of 2 skipped months
