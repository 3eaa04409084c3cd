"""Cost-aware admission for the online service: what a scoring request costs, and a per-worker budget of it.

A request's price is ``items x seconds per item of its reasons mode``, the per-item figures measured in process
on the served models when the service starts (:func:`measure_scoring_costs`): the scoring rule on a sample of
rows with no reasons, with all reasons, and each model's ``pred_contrib`` alone. Reason codes dominate (on the
demo's models one id with all reasons costs ~40-90x one without), so a price by item count alone is wrong by
that factor. ``reasons: action`` explains at most one model per row and is priced as the costliest model's share
of the reasons: an upper bound (rows whose action is ``none`` get no reasons at all).

:class:`CostBudget` is a semaphore of estimated seconds that does not wait: a request is admitted only while the
work already admitted (running or waiting) plus its own stays within the budget; otherwise the caller answers at
once (429) instead of queueing it behind work it cannot see.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from serving.runtime.models import ScoringModels, matrix_models
from serving.runtime.policy import Policy
from serving.runtime.scoring import score_records

#: The reasons modes a request may ask for, cheapest first.
REASON_MODES: tuple[str, ...] = ("none", "action", "all")


@dataclass(frozen=True)
class ScoringCosts:
    """Estimated seconds of scoring per item (one id or record), by reasons mode."""

    per_item_s: Mapping[str, float]

    def price(self, items: int, reasons: str) -> float:
        """Estimated seconds of scoring for ``items`` items with ``reasons``."""
        return items * self.per_item_s[reasons]

    def items_within(self, seconds: float, reasons: str) -> int:
        """The most items with ``reasons`` whose price stays within ``seconds``."""
        return int(math.floor(seconds / self.per_item_s[reasons]))


def _best_of(repeats: int, work) -> float:
    # The fastest of a few runs: the other workers of a shared machine only ever add time.
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def measure_scoring_costs(models: ScoringModels, policy: Policy, *, rows: int = 64, repeats: int = 3) -> ScoringCosts:
    """Time the scoring rule on ``rows`` rows per reasons mode, on these models (about 0.5 s for the demo's).

    The rows have every feature missing and a tier below the top one, so every model scores (and, with all
    reasons, explains) every row; TreeSHAP's cost does not depend on the values. ``action`` is priced as no
    reasons plus the costliest model's share of all reasons.
    """
    matrices = matrix_models(models)
    tier = next((t for t in (*models.categories().get("value_tier", ()), "mass") if t != policy.top_value_tier), "mass")
    records = [{"customer_id": i, "as_of": None, "value_tier": tier} for i in range(rows)]
    score_records(records[:2], models, policy, reasons="all")  # warm caches (phrasers, single-row predictors)
    none = _best_of(repeats, lambda: score_records(records, models, policy, reasons="none")) / rows
    every = _best_of(repeats, lambda: score_records(records, models, policy, reasons="all")) / rows
    X = {m.name: m.encode_records(records) for m in matrices}
    explain = [_best_of(repeats, lambda m=m: m.contributions(X[m.name])) for m in matrices]
    reasons = max(every - none, 0.0)
    action = none + reasons * (max(explain) / sum(explain) if sum(explain) > 0 else 1.0)
    floor = 1e-7  # a price of 0 would admit anything
    return ScoringCosts({"none": max(none, floor), "action": max(action, floor), "all": max(every, floor)})


class CostBudget:
    """Seconds of estimated scoring admitted at once; :meth:`take` never waits (False: over the budget)."""

    def __init__(self, capacity_s: float) -> None:
        self.capacity_s = capacity_s
        self.in_use_s = 0.0

    def take(self, cost_s: float) -> bool:
        if self.in_use_s + cost_s > self.capacity_s:
            return False
        self.in_use_s += cost_s
        return True

    def give_back(self, cost_s: float) -> None:
        self.in_use_s = max(0.0, self.in_use_s - cost_s)


def cheaper_forms(costs: ScoringCosts, items: int, reasons: str, limit_s: float) -> str:
    """What the client can send instead of ``items`` items with ``reasons`` to stay within ``limit_s`` seconds."""
    forms = []
    for mode in REASON_MODES[: REASON_MODES.index(reasons)][::-1]:
        if costs.price(items, mode) <= limit_s:
            forms.append(f"reasons: {mode} (about {costs.price(items, mode):.2f} s)")
            break
    most = costs.items_within(limit_s, reasons)
    if most >= 1:
        forms.append(f"at most {most:,} ids or records per call with reasons: {reasons}")
    if not forms:
        forms.append(f"at most {max(costs.items_within(limit_s, 'none'), 1):,} per call with reasons: none")
    return " or ".join(forms)
