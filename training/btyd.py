"""A buy-till-you-die baseline for CLV: BG/NBD x Gamma-Gamma on the raw purchase log (optional extra ``btyd``).

For a transactions-only extract the classic CLV model is the reference any learned model has to beat: BG/NBD
(Fader, Hardie & Lee 2005) for how many purchases a customer still makes, Gamma-Gamma (Fader & Hardie 2013) for
what each is worth. Both are fitted with pymc-marketing (MAP) on the **calibration period**: every transaction
up to the end of the first test month, which is also all the model may know. For each test row (customer,
as_of) the customer's recency / frequency / age are summarised up to that as_of and the fitted population
parameters give the expected value of each of the next H months, discounted exactly like the label.

What counts as a purchase and what it is worth come from the value definition (``config.revenue``): the
transactions of every category with a non-zero ``transaction_rate``, worth amount x rate. The monthly cost to
serve is subtracted over the horizon and the result floored at 0, as in the label. Balance margins are not
purchases: with a ``balances`` table the baseline is skipped (and the run says so).

Pure pieces (:func:`purchase_log`, :func:`rfm_at`, :func:`horizon_value`) take frames; :func:`btyd_baseline`
reads the raw transactions named in the feature table's metadata.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config, Labels

#: Days per month in the purchase clock (time unit: days).
DAYS_PER_MONTH = 30.4375
NAME = "bgnbd_gamma_gamma"
TITLE = "BG/NBD x Gamma-Gamma"


def available() -> bool:
    """Whether pymc-marketing (extra ``btyd``) is installed."""
    from importlib.util import find_spec

    return find_spec("pymc_marketing") is not None


def purchase_log(transactions: pd.DataFrame, transaction_rate: dict[str, float]) -> pd.DataFrame:
    """The revenue-earning transactions as purchases: ``customer_id``, ``timestamp``, ``value`` (amount x rate)."""
    rates = {c: r for c, r in transaction_rate.items() if r}
    earning = transactions.loc[transactions["category"].astype("str").isin(list(rates))]
    value = earning["amount"].to_numpy(dtype="float64") * earning["category"].astype("str").map(rates).to_numpy(dtype="float64")
    return pd.DataFrame({"customer_id": earning["customer_id"].to_numpy(), "timestamp": pd.to_datetime(earning["timestamp"]).to_numpy(),
                         "value": value})


def rfm_at(log: pd.DataFrame, end: pd.Timestamp, customers: np.ndarray | None = None) -> pd.DataFrame:
    """Frequency (repeat purchase days), recency and age T (days) and mean repeat value of each customer, up to ``end``.

    Purchases on the same day count as one, with their values summed (the BG/NBD clock ticks in days).
    Customers in ``customers`` without a purchase by ``end`` are absent (the caller predicts 0 for them).
    """
    end_day = pd.Timestamp(end).floor("D")
    seen = log.loc[log["timestamp"] < end_day + pd.Timedelta(days=1)]
    if customers is not None:
        seen = seen.loc[seen["customer_id"].isin(customers)]
    daily = seen.assign(day=seen["timestamp"].dt.floor("D")).groupby(["customer_id", "day"], sort=True)["value"].sum().reset_index()
    first = daily.groupby("customer_id")["day"].transform("min")
    repeat = daily.loc[daily["day"] > first]
    summary = daily.groupby("customer_id").agg(first=("day", "min"), last=("day", "max"), days=("day", "size"))
    out = pd.DataFrame({
        "customer_id": summary.index.to_numpy(),
        "frequency": (summary["days"] - 1).to_numpy(dtype="float64"),
        "recency": (summary["last"] - summary["first"]).dt.days.to_numpy(dtype="float64"),
        "T": (end_day - summary["first"]).dt.days.to_numpy(dtype="float64"),
    })
    mean_repeat = repeat.groupby("customer_id")["value"].mean()
    out["monetary_value"] = out["customer_id"].map(mean_repeat).fillna(0.0).to_numpy()
    return out


@dataclass
class BTYDModel:
    """The fitted BG/NBD (purchases) and Gamma-Gamma (value per purchase) models."""

    purchases: object
    spend: object
    calibration_end: pd.Timestamp
    customers: int
    seconds: float


def fit_btyd(log: pd.DataFrame, calibration_end: pd.Timestamp, *, seed: int = 0) -> BTYDModel:
    """Fit both models (MAP) on the purchases up to ``calibration_end``."""
    import logging
    import warnings

    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    for name in ("pymc", "pytensor", "pymc_marketing"):
        logging.getLogger(name).setLevel(logging.ERROR)
    began = time.perf_counter()
    rfm = rfm_at(log, calibration_end)
    if len(rfm) < 10 or (rfm["frequency"] > 0).sum() < 10:
        raise ValueError(f"too few repeat purchasers ({int((rfm['frequency'] > 0).sum())}) up to {calibration_end.date()} for BG/NBD")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        purchases = BetaGeoModel(data=rfm[["customer_id", "frequency", "recency", "T"]])
        purchases.fit(method="map", progressbar=False)
        repeaters = rfm.loc[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0), ["customer_id", "frequency", "monetary_value"]]
        spend = GammaGammaModel(data=repeaters)
        spend.fit(method="map", progressbar=False)
    return BTYDModel(purchases, spend, calibration_end, len(rfm), time.perf_counter() - began)


def horizon_value(model: BTYDModel, rfm: pd.DataFrame, *, horizon_months: int, annual_rate: float,
                  cost_to_serve_monthly: float) -> np.ndarray:
    """Expected discounted value over the next ``horizon_months`` of each row of ``rfm``, minus cost to serve, >= 0.

    Month h of the horizon holds E[purchases in month h] x E[value per purchase] and is discounted by
    (1 + annual_rate) ** (-h / 12), as the CLV label is.
    """
    import warnings

    if rfm.empty:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spend = np.asarray(model.spend.expected_customer_spend(data=rfm[["customer_id", "frequency", "monetary_value"]])
                           .mean(("chain", "draw")).values, dtype="float64")
        data = rfm[["customer_id", "frequency", "recency", "T"]]
        previous = np.zeros(len(rfm))
        total = np.zeros(len(rfm))
        for h in range(1, horizon_months + 1):
            cumulative = np.asarray(model.purchases.expected_purchases(data=data, future_t=h * DAYS_PER_MONTH)
                                    .mean(("chain", "draw")).values, dtype="float64")
            total += (cumulative - previous) * spend * (1 + annual_rate) ** (-h / 12)
            previous = cumulative
    cost = cost_to_serve_monthly * float(np.sum((1 + annual_rate) ** (-np.arange(1, horizon_months + 1) / 12)))
    return np.maximum(total - cost, 0.0)


def btyd_baseline(test: pd.DataFrame, metadata: dict, config: Config, labels: Labels, first_test_month: pd.Period,
                  *, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """Predictions of the BTYD baseline for the ``test`` rows (None when it cannot run), and a line saying what it did."""
    from features.raw import find_table

    if not available():
        return None, f"{TITLE} baseline: not run (install the optional extra: uv sync --extra btyd)"
    raw_dir = metadata.get("raw_dir")
    if not raw_dir or not Path(raw_dir).is_dir():
        return None, f"{TITLE} baseline: not run (the feature table names no raw folder with the transactions)"
    raw_dir = Path(raw_dir)
    if find_table(raw_dir, "balances") is not None and any(config.revenue.annual_rate.values()):
        return None, f"{TITLE} baseline: not run (value includes balance margins, which a purchase model does not describe)"
    if not any(config.revenue.transaction_rate.values()):
        return None, f"{TITLE} baseline: not run (no transaction category earns value in config revenue.transaction_rate)"
    source = find_table(raw_dir, "transactions")
    log = purchase_log(source.read_pandas(columns=["customer_id", "timestamp", "amount", "category"]), config.revenue.transaction_rate)
    calibration_end = first_test_month.to_timestamp(how="end").floor("D")
    try:
        model = fit_btyd(log, calibration_end, seed=seed)
    except ValueError as err:
        return None, f"{TITLE} baseline: not run ({err})"
    predictions = np.zeros(len(test))
    months = pd.to_datetime(test["as_of"]).dt.to_period("M").to_numpy()
    for month in pd.unique(months):
        rows = np.flatnonzero(months == month)
        customers = test["customer_id"].to_numpy()[rows]
        rfm = rfm_at(log, month.to_timestamp(how="end").floor("D"), customers)
        values = pd.Series(horizon_value(model, rfm, horizon_months=labels.clv_horizon_months,
                                         annual_rate=labels.clv_annual_discount_rate,
                                         cost_to_serve_monthly=config.revenue.cost_to_serve_monthly), index=rfm["customer_id"])
        predictions[rows] = values.reindex(customers).fillna(0.0).to_numpy()
    return predictions, (f"{TITLE} baseline: fitted (MAP) on {model.customers:,} customers' purchases up to "
                         f"{calibration_end.date()} (calibration period) in {model.seconds:.0f}s")
