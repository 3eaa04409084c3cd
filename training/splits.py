"""Out-of-time splits on as_of months: train on the past, validate later, test on the newest labeled months.

Between train and validation, and between validation and test, the split leaves a gap of the label horizon:
the first month of a later split is at least ``horizon`` months after the last month of the earlier one, so the
label window (as_of, as_of + horizon] of a training row never overlaps that of a validation or test row. That
is also how a model is used: trained on as_of <= T - horizon (the newest known labels), scoring at T.

Short histories. When the full split does not fit, :func:`out_of_time_split` takes the first of these that does,
and says exactly what it chose (``strategy``, ``choice``, and a warning carried into the run and the model card):

1. ``full``: both gaps of the label horizon;
2. ``shortened_gap``: the train -> validation gap shortened (never the gap before test, which keeps test honest);
3. ``fewer_validation_months``: as 2 with fewer validation months (down to one);
4. ``censored`` (CLV only, ``allow_censored``): no gaps; the labels of training and validation rows are censored
   at the first test month, so nothing fitted reads a month after the test's first as_of (the longest windows the
   data allows; training and validation windows overlap, which only makes early stopping slightly optimistic).
   The model learns a discounted monthly rate with the observed exposure as an offset
   (:func:`censor_clv_labels`, :func:`discounted_exposure`) and predicts the full horizon; test labels are
   complete. Fewer validation, then fewer test months are tried.

Only when none fits is it refused, naming the months needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
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
    strategy: str = "full"
    choice: str = ""

    @property
    def censored(self) -> bool:
        """Training and validation labels are censored (shorter than the horizon): see the module docstring."""
        return self.strategy == "censored"

    def to_params(self) -> dict[str, str | int]:
        """Flat name -> value pairs for MLflow params."""
        return {
            "split_strategy": self.strategy,
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
            "strategy": self.strategy,
            "choice": self.choice,
            "warnings": list(self.warnings),
        }

    def render(self) -> str:
        text = (
            f"train {_span(self.train_months)} ({len(self.train_months)} months) | gap {self.gap_train_validation} | "
            f"validation {_span(self.validation_months)} | gap {self.gap_validation_test} | test {_span(self.test_months)}"
        )
        label = f"SPLIT CHOSEN ({self.strategy})" if self.strategy != "full" else "WARNING"
        return "\n".join([text, *(f"{label}: {w}" for w in self.warnings)])


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
    allow_censored: bool = False,
) -> OutOfTimeSplit:
    """Split the labeled as_of months into train, validation and test by calendar time.

    Parameters
    ----------
    labeled_months
        The as_of months that carry a (full-horizon) label (dates or monthly periods, any order, duplicates allowed).
    horizon_months
        The label horizon; each gap between splits is at least this many months when the history allows.
    validation_months, test_months
        Calendar months in the validation and the test split (the newest labeled months are the test).
    min_train_months
        The fewest training months any split may have.
    allow_censored
        Whether censored label windows may be used (CLV with a monthly revenue column): the last resort.

    Raises
    ------
    SplitError
        When no split in the module docstring fits, with the months needed.
    """
    months = sorted({pd.Period(m, freq="M") for m in labeled_months})
    if not months:
        raise SplitError("no labeled as_of months: build features over a longer period than the label horizon")
    first, last = months[0], months[-1]
    for validation in range(validation_months, 0, -1):
        split = _gapped_split(months, horizon_months, validation, test_months, min_train_months)
        if split is None:
            continue
        if split.gap_train_validation == horizon_months and validation == validation_months:
            return split
        strategy = "shortened_gap" if validation == validation_months else "fewer_validation_months"
        choice = (f"the full split needs {test_months + 2 * horizon_months + validation_months + min_train_months - 2} "
                  f"labeled months, there are {len(months)}: train -> validation gap shortened to {split.gap_train_validation} months "
                  f"(from {horizon_months})"
                  + (f", {validation} validation month(s) instead of {validation_months}" if validation != validation_months else "")
                  + f"; the {test_months} test months keep the full {horizon_months}-month gap")
        warning = (f"{choice}. Label windows of the last training months overlap validation's, so early stopping and "
                   "calibration may be slightly optimistic")
        return OutOfTimeSplit(split.train_months, split.validation_months, split.test_months, horizon_months,
                              split.gap_train_validation, horizon_months, (warning,), strategy, choice)
    if allow_censored:
        for tests in range(test_months, 0, -1):
            for validation in range(validation_months, 0, -1):
                test_start = last - (tests - 1)
                validation_start = test_start - validation
                train = tuple(m for m in months if m < validation_start)
                if len(train) < min_train_months:
                    continue
                choice = (
                    f"too few labeled months ({len(months)}, {first}..{last}) for gaps of the {horizon_months}-month horizon: "
                    f"CENSORED label windows - training and validation labels stop at {test_start}, the first test month "
                    f"(exposure 1..{horizon_months} months as an offset, a monthly rate scaled to {horizon_months} months); "
                    f"{validation} validation and {tests} test month(s); test labels are complete"
                )
                warning = (f"{choice}. The model assumes a customer's value accrues at a steady monthly rate over the horizon")
                return OutOfTimeSplit(
                    train_months=train,
                    validation_months=tuple(m for m in months if validation_start <= m < test_start),
                    test_months=tuple(m for m in months if m >= test_start),
                    horizon_months=horizon_months, gap_train_validation=0, gap_validation_test=0,
                    warnings=(warning,), strategy="censored", choice=choice,
                )
    gapped = test_months + horizon_months + min_train_months  # one validation month right after training
    need = f"at least {gapped} labeled as_of months ({gapped + horizon_months} months of data)"
    if allow_censored:
        censored = min_train_months + 2
        need = f"at least {censored} labeled as_of months ({censored + horizon_months} months of data) with censored label windows"
    raise SplitError(
        f"{len(months)} labeled as_of months ({first}..{last}) are too few for any honest out-of-time split with a "
        f"{horizon_months}-month label horizon and {min_train_months} training months: it needs {need}; build features "
        "over a longer history, or shorten the horizon or training.min_train_months in the configuration"
    )


def _gapped_split(months: list[pd.Period], horizon: int, validation_months: int, test_months: int,
                  min_train_months: int) -> OutOfTimeSplit | None:
    """Train | gap | validation | full gap | test, the first gap shortened (to >= 1) if needed; None if nothing fits."""
    first, last = months[0], months[-1]
    test_start = last - (test_months - 1)
    validation_end = test_start - horizon
    validation_start = validation_end - (validation_months - 1)
    months_before_validation = (validation_start - first).n  # the train months if the gap were 0
    gap = min(horizon, months_before_validation - min_train_months + 1)
    if gap < 1:
        return None
    train_end = validation_start - gap
    in_range = lambda lo, hi: tuple(m for m in months if lo <= m <= hi)  # noqa: E731
    return OutOfTimeSplit(
        train_months=in_range(first, train_end),
        validation_months=in_range(validation_start, validation_end),
        test_months=in_range(test_start, last),
        horizon_months=horizon,
        gap_train_validation=gap,
        gap_validation_test=horizon,
    )


def discounted_exposure(months: np.ndarray | int, annual_rate: float) -> np.ndarray:
    """sum over h = 1..e of (1 + annual_rate) ** (-h / 12): the discounted months of a label window of e months."""
    e = np.asarray(months, dtype="int64")
    table = np.concatenate([[0.0], np.cumsum((1 + annual_rate) ** (-np.arange(1, max(int(e.max(initial=0)), 1) + 1) / 12))])
    return table[e]


def censor_clv_labels(frame: pd.DataFrame, rows: pd.DataFrame, *, cutoff: pd.Period, horizon_months: int,
                      annual_rate: float, revenue_column: str = "net_revenue_1m") -> tuple[np.ndarray, np.ndarray]:
    """CLV labels of ``rows`` censored at ``cutoff``, and their exposure in months.

    The label of a row at as_of t is max(0, sum over h = 1..e of revenue in month t + h x (1 + rate) ** (-h / 12))
    with e = min(horizon, cutoff - t): the CLV label's definition read only up to ``cutoff``. Months in which the
    customer has no row (after closure) contribute 0, as in the full label. ``frame`` is the whole customer-month
    table (it holds the months after each row); neither frame is changed.
    """
    if revenue_column not in frame.columns:
        raise SplitError(f"censored CLV labels need the monthly revenue column {revenue_column!r}, absent from the table")
    index = lambda f: as_of_months(f["as_of"]).dt.year * 12 + as_of_months(f["as_of"]).dt.month - 1  # noqa: E731
    revenue = pd.Series(frame[revenue_column].to_numpy(dtype="float64"),
                        index=pd.MultiIndex.from_arrays([frame["customer_id"].to_numpy(), index(frame).to_numpy()]))
    revenue = revenue[~revenue.index.duplicated()]
    t = index(rows).to_numpy()
    cut = cutoff.year * 12 + cutoff.month - 1
    exposure = np.clip(cut - t, 0, horizon_months)
    total = np.zeros(len(rows))
    customers = rows["customer_id"].to_numpy()
    for h in range(1, int(exposure.max(initial=0)) + 1):
        inside = exposure >= h
        keys = pd.MultiIndex.from_arrays([customers[inside], t[inside] + h])
        total[inside] += np.nan_to_num(revenue.reindex(keys).to_numpy(), nan=0.0) * (1 + annual_rate) ** (-h / 12)
    return np.maximum(total, 0.0), exposure


def split_frame(frame: pd.DataFrame, split: OutOfTimeSplit) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The (train, validation, test) rows of ``frame`` by its as_of month; other rows (the gaps) are left out."""
    months = as_of_months(frame["as_of"])
    return tuple(frame.loc[months.isin(list(part))] for part in (split.train_months, split.validation_months, split.test_months))
