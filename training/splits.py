"""Out-of-time splits on as_of months: train on the past, validate later, test on the newest labeled months.

Between train and validation, and between validation and test, the split leaves a gap of the label horizon:
the first month of a later split is at least ``horizon`` months after the last month of the earlier one, so the
label window (as_of, as_of + horizon] of a training row never overlaps that of a validation or test row. That
is also how a model is used: trained on as_of <= T - horizon (the newest known labels), scoring at T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd


class SplitError(ValueError):
    """The table has too few labeled months for an honest out-of-time split."""


@dataclass(frozen=True)
class OutOfTimeSplit:
    """The as_of months (monthly periods) of each split and the gaps between them."""

    train_months: tuple[pd.Period, ...]
    validation_months: tuple[pd.Period, ...]
    test_months: tuple[pd.Period, ...]
    horizon_months: int
    gap_train_validation: int
    gap_validation_test: int
    warnings: tuple[str, ...] = field(default=())

    def to_params(self) -> dict[str, str | int]:
        """Flat name -> value pairs for MLflow params."""
        return {
            "split_train_months": _span(self.train_months),
            "split_validation_months": _span(self.validation_months),
            "split_test_months": _span(self.test_months),
            "split_horizon_months": self.horizon_months,
            "split_gap_train_validation": self.gap_train_validation,
            "split_gap_validation_test": self.gap_validation_test,
        }

    def to_dict(self) -> dict:
        return {
            "train": [str(m) for m in self.train_months],
            "validation": [str(m) for m in self.validation_months],
            "test": [str(m) for m in self.test_months],
            "horizon_months": self.horizon_months,
            "gap_train_validation": self.gap_train_validation,
            "gap_validation_test": self.gap_validation_test,
            "warnings": list(self.warnings),
        }

    def render(self) -> str:
        text = (
            f"train {_span(self.train_months)} ({len(self.train_months)} months) | gap {self.gap_train_validation} | "
            f"validation {_span(self.validation_months)} | gap {self.gap_validation_test} | test {_span(self.test_months)}"
        )
        return "\n".join([text, *(f"WARNING: {w}" for w in self.warnings)])


def _span(months: tuple[pd.Period, ...]) -> str:
    return f"{months[0]}..{months[-1]}" if months else "-"


def as_of_months(as_of: pd.Series) -> pd.Series:
    """Monthly periods of an as_of column (dates, datetimes or strings)."""
    return pd.to_datetime(as_of).dt.to_period("M")


def out_of_time_split(
    labeled_months: Iterable,
    *,
    horizon_months: int,
    validation_months: int = 3,
    test_months: int = 3,
    min_train_months: int = 6,
) -> OutOfTimeSplit:
    """Split the labeled as_of months into train, validation and test by calendar time.

    Parameters
    ----------
    labeled_months
        The as_of months that carry a label (dates or monthly periods, any order, duplicates allowed).
    horizon_months
        The label horizon; each gap between splits is at least this many months.
    validation_months, test_months
        Calendar months in the validation and the test split (the newest labeled months are the test).
    min_train_months
        If the full gap would leave fewer training months than this, the train -> validation gap is
        shortened (never the validation -> test gap, which keeps the test honest) and a warning says so.

    Raises
    ------
    SplitError
        When even a one-month train -> validation gap leaves fewer than ``min_train_months`` months.
    """
    months = sorted({pd.Period(m, freq="M") for m in labeled_months})
    if not months:
        raise SplitError("no labeled as_of months: build features over a longer period than the label horizon")
    first, last = months[0], months[-1]
    test_start = last - (test_months - 1)
    validation_end = test_start - horizon_months
    validation_start = validation_end - (validation_months - 1)
    months_before_validation = (validation_start - first).n  # the train months if the gap were 0
    needed = horizon_months + min_train_months - 1
    warnings: list[str] = []
    gap = horizon_months
    if months_before_validation < needed:
        gap = months_before_validation - min_train_months + 1
        if gap < 1:
            span = validation_months + test_months + horizon_months + min_train_months
            raise SplitError(
                f"{len(months)} labeled as_of months ({first}..{last}) are too few for an out-of-time split with "
                f"{test_months} test months, a {horizon_months}-month gap, {validation_months} validation months and "
                f"{min_train_months} training months (needs about {span}); build features over a longer history "
                "or lower training.min_train_months / validation_months / test_months in the configuration"
            )
        warnings.append(
            f"train -> validation gap shortened from {horizon_months} to {gap} months (too few labeled months for the "
            f"full label horizon): label windows of the last training months overlap validation's, so early stopping "
            f"and calibration may be slightly optimistic; the test months keep the full gap"
        )
    train_end = validation_start - gap
    in_range = lambda lo, hi: tuple(m for m in months if lo <= m <= hi)  # noqa: E731
    return OutOfTimeSplit(
        train_months=in_range(first, train_end),
        validation_months=in_range(validation_start, validation_end),
        test_months=in_range(test_start, last),
        horizon_months=horizon_months,
        gap_train_validation=gap,
        gap_validation_test=horizon_months,
        warnings=tuple(warnings),
    )


def split_frame(frame: pd.DataFrame, split: OutOfTimeSplit) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The (train, validation, test) rows of ``frame`` by its as_of month; other rows (the gaps) are left out."""
    months = as_of_months(frame["as_of"])
    return tuple(frame.loc[months.isin(list(part))] for part in (split.train_months, split.validation_months, split.test_months))
