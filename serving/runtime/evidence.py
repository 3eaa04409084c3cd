"""How much evidence a campaign needs, and what its read-out shows: power and plain-words conclusions.

Pure arithmetic on planned figures (no model, no data access), so that a campaign list can say, when it is written,
how large a holdout would detect the value it expects, and a read-out can say whether its result settles anything.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

Z95 = float(norm.ppf(0.975))


def holdout_for_power(value_per_contact: float, sd_per_contact: float, contacts: int, *, power: float = 0.8,
                      alpha: float = 0.05) -> int | None:
    """Holdout size that detects ``value_per_contact`` at ``power`` (two-sided ``alpha``) beside ``contacts``
    contacted customers whose gain has standard deviation ``sd_per_contact``; None when no holdout can (the list
    itself is too small, or the expected value is not positive)."""
    if not (value_per_contact > 0 and sd_per_contact > 0 and contacts > 0):
        return None
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    room = (value_per_contact / (z * sd_per_contact)) ** 2 - 1 / contacts
    return None if room <= 0 else int(np.ceil(1 / room))


def gain_sd(success_probability, value, take_up, price) -> float:
    """Standard deviation of one contacted customer's gain over a list: the outcome's Bernoulli noise x value plus
    the acceptance's x price (the spread of the planned figures across the list included)."""
    p = np.clip(np.asarray(success_probability, dtype="float64"), 0, 1)
    v = np.nan_to_num(np.asarray(value, dtype="float64"))
    price = np.nan_to_num(np.asarray(price, dtype="float64"))
    mean = p * v - take_up * price
    second = p * v**2 - 2 * p * v * take_up * price + take_up * price**2  # E[(Y v - A price)^2], Y and A independent
    variance = second.mean() - mean.mean() ** 2
    return float(np.sqrt(max(variance, 0.0)))


def conclusion(estimate: float, low: float, high: float, currency: str, *, needed_holdout: int | None, holdout: int) -> str:
    """The read-out in a campaign manager's words."""
    if low > 0:
        return f"conclusive: the campaign earned money (at least {currency} {low:,.0f} at 95% confidence)"
    if high < 0:
        return f"conclusive: the campaign lost money (at least {currency} {-high:,.0f} at 95% confidence)"
    more = (f"; a holdout of about {needed_holdout:,} customers (this one has {holdout:,}) would detect the value the list "
            f"expected 8 times in 10" if needed_holdout else
            "; at this list size no holdout can detect the value the list expected: read several months together")
    return (f"not conclusive: the result ({currency} {estimate:,.0f}) could be anything from {currency} {low:,.0f} to "
            f"{currency} {high:,.0f}, so it does not show that the campaign paid or lost{more}")
