"""Uplift models: how much a retention or an upgrade offer changes each customer's outcome.

Learned from the bank's randomized contacts (``campaign_contacts``: treated against the randomized control group,
in the targeted campaigns and in the exploration samples). One row per contact: the customer's features at the
contact's ``as_of`` (the month-end before the contact), ``treated``, and the outcome of the offer's model over its
horizon (retention: no exit, ``1 - churn_3m``; upgrade: ``upgrade_3m``). The uplift of a row is
P(outcome | treated, x) - P(outcome | control, x).

Meta-learners with LightGBM base learners (Kuenzel et al. 2019, "Metalearners for estimating heterogeneous
treatment effects", PNAS), a small own implementation (causalml takes ~14 s to import):

- ``t``: one classifier per arm; uplift = mu1(x) - mu0(x);
- ``x``: the T-learner's arms impute each row's effect (treated: y - mu0(x); control: mu1(x) - y), one regressor per
  arm learns it, and the two are blended by the propensity e: tau(x) = e tau0(x) + (1 - e) tau1(x);
- ``shift`` (the default): the offer shifts the log-odds of the outcome. The no-offer model mu0 learns from the
  randomized controls (and every untreated customer-month with ``control_pool = all``); a second booster learns only
  the shift s(x), boosted on the treated rows from mu0's log-odds (LightGBM ``init_score``): tau(x) =
  sigmoid(logit mu0(x) + s(x)) - mu0(x). An offer that multiplies a hazard or an adoption rate is a near-constant
  shift of the log-odds while its effect on the probability grows with the risk itself, so the few thousand treated
  rows only have to learn a small, smooth function (stumps by default) and the level comes from the well-fed mu0.
  The T-learner instead subtracts two separately fitted noisy probabilities whose difference is mostly noise.

Optuna picks the learner and its trees by the Qini coefficient on out-of-time validation months, but a trial
replaces the default only if its validation Qini beats the default's by more than the noise (a paired bootstrap of
the validation rows): at a few thousand contacts per quarter the Qini of the simulator's own true effect is only
2-4 standard deviations of a random ranking's, so an unguarded search picks noise. The test months (never seen
by tuning) give the reported Qini beside the Qini of the true effect on the same rows, and, on the simulated bank,
the noise-free ratio (:func:`expected_qini`: the same area computed with each row's true effect instead of the
observed outcomes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from custbase.config import Config
from features.feature_set import check_feature_set, read_feature_metadata
from serving.runtime.bundle import ModelBundle, prepare_features
from serving.runtime.uplift import predict_uplift
from training.spec import ModelSpec, get_spec
from training.splits import OutOfTimeSplit, as_of_months, out_of_time_split, split_frame


@dataclass(frozen=True)
class UpliftSpec:
    """One uplift model: which offer, which outcome, which ground-truth effect."""

    name: str
    offer: str
    base_model: str  # the model whose label and population the outcome follows
    oracle_column: str
    offer_cost_column: str
    description: str

    @property
    def registered_name(self) -> str:
        return f"custbase-{self.name}"

    @property
    def base(self) -> ModelSpec:
        return get_spec(self.base_model)

    def outcome(self, frame: pd.DataFrame) -> np.ndarray:
        """1 when the offer's goal is met: retention, the customer did not exit; upgrade, the tier went up."""
        label = frame[self.base.label].to_numpy(dtype="float64")
        return 1.0 - label if self.base_model == "churn" else label

    def gate_spec(self) -> ModelSpec:
        """The promotion gate's view: Qini must improve by the margin; the ATE error must not worsen."""
        return ModelSpec(name=self.name, label=self.base.label, kind="binary", primary_metric="qini",
                         calibration_metric="ate_abs_error", oracle_column=self.oracle_column, description=self.description)


UPLIFT_SPECS: dict[str, UpliftSpec] = {
    "retention-uplift": UpliftSpec(
        name="retention-uplift", offer="retention", base_model="churn", oracle_column="campaign_effect",
        offer_cost_column="retention_offer_cost",
        description="Rise in the probability of not exiting within the churn horizon if the customer gets a retention offer.",
    ),
    "upgrade-uplift": UpliftSpec(
        name="upgrade-uplift", offer="upgrade", base_model="upgrade", oracle_column="upgrade_campaign_effect",
        offer_cost_column="upgrade_offer_cost",
        description="Rise in the probability of moving up a value tier within the upgrade horizon if the customer gets an upgrade offer.",
    ),
}


def get_uplift_spec(name: str) -> UpliftSpec:
    try:
        return UPLIFT_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown uplift model {name!r}; choose one of {', '.join(UPLIFT_SPECS)}") from None


# --------------------------------------------------------------------------------------------- data


def contact_as_of(timestamps: pd.Series) -> pd.Series:
    """The as_of month (a Period) of a contact: the month before it, whose month-end features it was chosen on."""
    return pd.to_datetime(timestamps).dt.to_period("M") - 1


def contact_rows(frame: pd.DataFrame, contacts: pd.DataFrame, spec: UpliftSpec, config: Config) -> pd.DataFrame:
    """The randomized contacts of ``spec.offer`` joined to their features and outcome (inputs are not changed).

    Rows whose customer-month is missing, not eligible for the base model, or not yet labeled are dropped.
    Returns the customer-month columns plus ``campaign_id``, ``treated`` (0/1) and ``outcome`` (0/1).
    """
    for column in ("customer_id", "timestamp", "offer", "treated", "campaign_id"):
        if column not in contacts.columns:
            raise ValueError(f"table campaign_contacts ({len(contacts)} rows) has no column {column}")
    offered = contacts.loc[contacts["offer"].astype("str") == spec.offer, ["customer_id", "campaign_id", "timestamp", "treated"]]
    if offered.empty:
        raise ValueError(f"table campaign_contacts has no {spec.offer!r} contacts: nothing to learn the {spec.name} model from")
    keys = offered.assign(_month=contact_as_of(offered["timestamp"])).drop(columns="timestamp")
    months = frame[["customer_id", "as_of"]].assign(_month=as_of_months(frame["as_of"]))
    joined = keys.merge(months, on=["customer_id", "_month"], how="inner").drop(columns="_month")
    rows = joined.merge(frame, on=["customer_id", "as_of"], how="inner")
    rows = rows.loc[spec.base.eligible(rows, config)].copy()
    rows["treated"] = rows["treated"].astype("bool").astype("int8")
    rows["outcome"] = spec.outcome(rows)
    return rows.reset_index(drop=True)


#: Untreated customer-months sampled for the control arm's outcome model (bounded: fitting time, not accuracy, limits it).
UNTREATED_SAMPLE_ROWS = 120_000


def untreated_customer_months(frame: pd.DataFrame, contacts: pd.DataFrame, spec: UpliftSpec, config: Config, *,
                              max_rows: int, seed: int = 0) -> pd.DataFrame:
    """Eligible, labeled customer-months with no treated ``spec.offer`` contact in the next month or the two before
    it (an offer's effect lasts the contact month and two after), sampled to at most ``max_rows``."""
    eligible = frame.loc[spec.base.eligible(frame, config), ["customer_id", "as_of"]]
    rows = frame.loc[untreated_index(eligible, contacts, spec, max_rows=max_rows, seed=seed)].copy()
    rows["outcome"] = spec.outcome(rows)
    return rows.reset_index(drop=True)


def untreated_index(eligible: pd.DataFrame, contacts: pd.DataFrame, spec: UpliftSpec, *, max_rows: int,
                    seed: int = 0) -> np.ndarray:
    """The sorted index labels of the rows of ``eligible`` (customer_id, as_of of eligible labeled customer-months,
    by customer and as_of) that :func:`untreated_customer_months` keeps."""
    offered = contacts.loc[(contacts["offer"].astype("str") == spec.offer) & contacts["treated"].astype(bool)]
    month = contact_as_of(offered["timestamp"])
    touched = pd.concat([offered[["customer_id"]].assign(_month=month + lag) for lag in (0, 1, 2)])
    keys = eligible.assign(_month=as_of_months(eligible["as_of"]))
    keys = keys.merge(touched.drop_duplicates(), on=["customer_id", "_month"], how="left", indicator=True)
    index = eligible.index[(keys["_merge"] == "left_only").to_numpy()]
    if len(index) > max_rows:
        index = np.random.default_rng(seed).choice(index, size=max_rows, replace=False)
    return np.sort(index)


def read_uplift_rows(path: Path, contacts: pd.DataFrame, spec: UpliftSpec, config: Config, *, max_rows: int,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(:func:`contact_rows`, :func:`untreated_customer_months`) of the customer-month table at ``path``, reading
    only the contacted and sampled customer-months, batch by batch (the same rows as on the whole table)."""
    from training.sample import eligible_keys, read_customer_months

    eligible = eligible_keys(path, spec.base, config)
    untreated = eligible.loc[untreated_index(eligible, contacts, spec, max_rows=max_rows, seed=seed)]
    offered = contacts.loc[contacts["offer"].astype("str") == spec.offer]
    months = offered[["customer_id"]].assign(_month=contact_as_of(offered["timestamp"])).drop_duplicates()
    contacted = eligible.assign(_month=as_of_months(eligible["as_of"])).merge(months, on=["customer_id", "_month"])
    frame = read_customer_months(path, pd.concat([untreated, contacted[["customer_id", "as_of"]]]))
    rows = contact_rows(frame, contacts, spec, config)
    pool = frame.merge(untreated, on=["customer_id", "as_of"], how="inner").copy()  # one block per dtype again
    pool["outcome"] = spec.outcome(pool)
    return rows, pool


def _pool(rows: pd.DataFrame, spec: UpliftSpec, features: list[str], categories: dict) -> tuple[pd.DataFrame, np.ndarray]:
    return prepare_features(rows, features, categories), rows["outcome"].to_numpy(dtype="float64")


# --------------------------------------------------------------------------------------------- metrics


def qini_curve(outcome, treated, score) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: for the top k rows by ``score``, treated responders minus control responders scaled to the
    treated count (Radcliffe 2007). Returns (share of rows, incremental responders), both starting at 0."""
    y, w, s = (np.asarray(a, dtype="float64") for a in (outcome, treated, score))
    order = np.argsort(-s, kind="stable")
    y, w = y[order], w[order]
    nt, nc = np.cumsum(w), np.cumsum(1 - w)
    yt, yc = np.cumsum(y * w), np.cumsum(y * (1 - w))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(nc > 0, yt - yc * nt / np.maximum(nc, 1), yt)  # no control yet: nothing to subtract
    n = len(y)
    return np.r_[0.0, np.arange(1, n + 1) / n], np.r_[0.0, q]


def qini_coefficient(outcome, treated, score) -> float:
    """Area between the Qini curve and the random-targeting line, per row (higher is better; 0 = random)."""
    share, q = qini_curve(outcome, treated, score)
    if len(q) < 2:
        return float("nan")
    random_line = q[-1] * share
    return float(np.trapezoid(q - random_line, share) / max(len(q) - 1, 1))


def expected_qini(true_effect, score) -> float:
    """The Qini coefficient with each row's TRUE effect in place of the observed outcomes (simulated bank only).

    The area above the random line of the cumulative true effect of the rows ranked by ``score``, per row: what
    the observed Qini estimates, without the noise of who happened to respond. ``expected_qini(tau, tau)`` is the
    best any ranking of these rows can do."""
    tau = np.asarray(true_effect, dtype="float64")
    if len(tau) == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype="float64"), kind="stable")
    q = np.r_[0.0, np.cumsum(tau[order])]
    share = np.linspace(0.0, 1.0, len(q))
    return float(np.trapezoid(q - q[-1] * share, share) / max(len(q) - 1, 1))


def random_qini_spread(outcome, treated, *, draws: int = 50, seed: int = 0) -> float:
    """Standard deviation of the Qini coefficient of random rankings of these rows: the noise floor of a Qini."""
    rng = np.random.default_rng(seed)
    y, w = np.asarray(outcome, dtype="float64"), np.asarray(treated, dtype="float64")
    return float(np.std([qini_coefficient(y, w, rng.random(len(y))) for _ in range(draws)]))


def average_effect(outcome, treated) -> float:
    """Difference in mean outcome, treated minus control."""
    y, w = np.asarray(outcome, dtype="float64"), np.asarray(treated, dtype="float64")
    if w.sum() == 0 or (1 - w).sum() == 0:
        return float("nan")
    return float(y[w == 1].mean() - y[w == 0].mean())


def uplift_metrics(outcome, treated, uplift) -> dict[str, float]:
    """Qini coefficient, the top-30% observed uplift, and the gap between predicted and observed average effect."""
    y, w, u = (np.asarray(a, dtype="float64") for a in (outcome, treated, uplift))
    top = u >= np.quantile(u, 0.7) if len(u) else np.zeros(0, bool)
    observed = average_effect(y, w)
    return {
        "qini": qini_coefficient(y, w, u),
        "observed_uplift_top30": average_effect(y[top], w[top]),
        "observed_uplift_all": observed,
        "predicted_uplift_mean": float(np.mean(u)) if len(u) else float("nan"),
        "ate_abs_error": float(abs(np.mean(u) - observed)) if len(u) else float("nan"),
    }


# --------------------------------------------------------------------------------------------- learners

#: Each tree hyperparameter's default beside its search range (as in ``training.search``). The defaults are the
#: shift learner's: stumps, slow and shrunk, because the effect is small against the noise of a 3-month outcome
#: (on the 20k bank the true effect's variance is ~2 % of the outcome's); deeper trees fit the noise. Tried and
#: dropped on the 20k bank (seed 11): weighting the treated rows by value (CLV or tier gain) to learn the
#: value-weighted effect directly (retention backtest 0.70 -> 0.19-0.32 of the oracle: a few high-value rows carry
#: all the noise), bagging five shift models (no gain), a ridge logistic shift (0.64), 4-15 leaf shifts (0.18-0.50).
UPLIFT_SEARCH = {
    "learner": ("shift", ("shift", "t", "x")),
    "control_pool": ("all", ("contacts", "all")),
    "num_leaves": (2, (2, 31)),
    "min_child_samples": (400, (50, 800)),
    "learning_rate": (0.02, (0.01, 0.2)),
    "rounds": (200, (50, 600)),
    "feature_fraction": (0.8, (0.4, 1.0)),
    "lambda_l2": (10.0, (1e-3, 30.0)),
}

#: The shift learner's no-offer model mu0: an ordinary outcome model on tens of thousands of rows (not tuned: the
#: search is about the scarce treated rows; the T- and X-learners use the searched trees for every part).
OUTCOME_MODEL = {"num_leaves": 15, "min_child_samples": 100, "learning_rate": 0.05, "rounds": 200,
                 "feature_fraction": 0.8, "lambda_l2": 1.0}


LEARNER_NAMES = {"shift": "log-odds shift learner (no-offer model + boosted shift)", "t": "T-learner", "x": "X-learner"}


def default_uplift_hyperparameters() -> dict:
    return {k: v[0] for k, v in UPLIFT_SEARCH.items()}


def _params(hp: dict, objective: str, num_threads: int, seed: int) -> dict:
    return {
        "objective": objective, "verbosity": -1, "num_threads": num_threads, "seed": seed, "deterministic": True,
        "num_leaves": int(hp["num_leaves"]), "min_child_samples": int(hp["min_child_samples"]),
        "learning_rate": float(hp["learning_rate"]), "feature_fraction": float(hp["feature_fraction"]),
        "lambda_l2": float(hp["lambda_l2"]), "max_depth": 8, "feature_pre_filter": False,
    }


def _fit(X: pd.DataFrame, y: np.ndarray, hp: dict, objective: str, num_threads: int, seed: int,
         init_score: np.ndarray | None = None) -> lgb.Booster:
    data = lgb.Dataset(X, label=y, init_score=init_score, free_raw_data=False,
                       params={"feature_pre_filter": False, "verbosity": -1})
    return lgb.train(_params(hp, objective, num_threads, seed), data, num_boost_round=int(hp["rounds"]))


def fit_uplift(X: pd.DataFrame, treated: np.ndarray, outcome: np.ndarray, hp: dict, *, num_threads: int = 1, seed: int = 0,
               untreated: tuple[pd.DataFrame, np.ndarray] | None = None, outcome_models: dict | None = None) -> dict[str, lgb.Booster]:
    """Fit the meta-learner ``hp['learner']`` (``shift``, ``t`` or ``x``); returns its boosters by role.

    ``outcome_models``: a dict kept by the caller across calls on the same rows, where the shift learner's no-offer
    model (which does not depend on the searched trees) is stored by control pool and reused.

    ``untreated`` (features, outcome) are customer-months offered nothing: with ``hp['control_pool'] == 'all'`` they
    join the control arm's outcome model, which then no longer rests on the few randomized controls alone
    (randomization within campaigns and a targeting rule on observed features make "no offer" ignorable given x).
    """
    w = np.asarray(treated, dtype=bool)
    y = np.asarray(outcome, dtype="float64")
    if w.sum() < 10 or (~w).sum() < 10:
        raise ValueError(f"uplift needs both arms: {int(w.sum())} treated and {int((~w).sum())} control rows")
    learner = hp.get("learner", "t")
    if hp.get("control_pool") == "all" and untreated is not None and len(untreated[0]):
        control_X, control_y = pd.concat([X.loc[~w], untreated[0]]), np.r_[y[~w], untreated[1]]
    else:
        control_X, control_y = X.loc[~w], y[~w]
    if learner == "shift":
        key = hp.get("control_pool", "contacts")
        cache = outcome_models if outcome_models is not None else {}
        if key not in cache:
            cache[key] = _fit(control_X, control_y, OUTCOME_MODEL, "binary", num_threads, seed)
        mu0 = cache[key]
        shift = _fit(X.loc[w], y[w], hp, "binary", num_threads, seed, init_score=mu0.predict(X.loc[w], raw_score=True))
        return {"control": mu0, "shift": shift}
    mu0 = _fit(control_X, control_y, hp, "binary", num_threads, seed)
    mu1 = _fit(X.loc[w], y[w], hp, "binary", num_threads, seed)
    boosters = {"treated": mu1, "control": mu0}
    if learner == "x":
        d1 = y[w] - mu0.predict(X.loc[w])
        d0 = mu1.predict(X.loc[~w]) - y[~w]
        boosters["effect_treated"] = _fit(X.loc[w], d1, hp, "regression", num_threads, seed)
        boosters["effect_control"] = _fit(X.loc[~w], d0, hp, "regression", num_threads, seed)
    return boosters


def blend_weight(hp: dict, treated: int, control: int, untreated: int) -> float:
    """The X-learner's weight of the control-arm effect model: the treated share of the rows the arms learned from.

    With the untreated pool in the control arm, the treated arm is the scarce one, so the effect learned on the
    treated rows (against the well-estimated control response) gets most of the weight (Kuenzel et al. 2019).
    """
    pool = untreated if hp.get("control_pool") == "all" else 0
    return treated / max(treated + control + pool, 1)


def bundle_uplift(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    """Uplift of each row of a customer-month ``frame`` with a logged uplift bundle."""
    return predict_uplift(bundle.boosters, bundle.prepare(frame), float(bundle.metadata.get("propensity", 0.5)))


# --------------------------------------------------------------------------------------------- search


def search_uplift(train_X, train_w, train_y, valid_X, valid_w, valid_y, *, trials: int, seed: int, num_threads: int,
                  storage_url: str | None = None, study_name: str | None = None, on_trial=None, progress: bool = True,
                  untreated: tuple[pd.DataFrame, np.ndarray] | None = None):
    """Optuna TPE over the learner and its trees, maximizing the validation Qini; returns (chosen hp, study).

    The defaults are trial 0. The best trial replaces them only when its validation Qini beats theirs in at least
    95 % of paired bootstrap resamples of the validation rows (:func:`beats_beyond_noise`); the study's user
    attributes ``chosen_qini`` and ``choice`` say which was kept and why.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_untreated = len(untreated[1]) if untreated is not None else 0
    counts = (int(np.sum(train_w)), int(len(train_w) - np.sum(train_w)), n_untreated)
    predictions: dict[int, np.ndarray] = {}
    outcome_models: dict = {}  # the shift learner's no-offer model, the same in every trial

    def objective(trial: optuna.Trial) -> float:
        hp = {name: trial.suggest_categorical(name, list(UPLIFT_SEARCH[name][1])) for name in ("learner", "control_pool")}
        for name in ("num_leaves", "min_child_samples", "rounds"):
            lo, hi = UPLIFT_SEARCH[name][1]
            hp[name] = trial.suggest_int(name, lo, hi, log=True)
        for name in ("learning_rate", "lambda_l2"):
            lo, hi = UPLIFT_SEARCH[name][1]
            hp[name] = trial.suggest_float(name, lo, hi, log=True)
        lo, hi = UPLIFT_SEARCH["feature_fraction"][1]
        hp["feature_fraction"] = trial.suggest_float("feature_fraction", lo, hi)
        boosters = fit_uplift(train_X, train_w, train_y, hp, num_threads=num_threads, seed=seed, untreated=untreated,
                              outcome_models=outcome_models)
        predictions[trial.number] = predict_uplift(boosters, valid_X, blend_weight(hp, *counts))
        return qini_coefficient(valid_y, valid_w, predictions[trial.number])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                storage=storage_url, study_name=study_name, load_if_exists=bool(storage_url))
    study.enqueue_trial(default_uplift_hyperparameters())
    callbacks = [lambda s, t: on_trial(t)] if on_trial else []
    study.optimize(objective, n_trials=trials, callbacks=callbacks, show_progress_bar=progress)
    best = study.best_trial
    default = next((t for t in study.trials if t.number in predictions and t.params == default_uplift_hyperparameters()), None)
    chosen, choice = best, "best validation Qini"
    if default is not None and best.number != default.number:
        share = beats_beyond_noise(valid_y, valid_w, predictions[best.number], predictions[default.number], seed=seed)
        if share < 0.95:
            chosen = default
            choice = (f"defaults kept: trial {best.number}'s validation Qini {best.value:.5f} beats theirs "
                      f"({default.value:.5f}) in only {share:.0%} of bootstrap resamples (noise)")
        else:
            choice = f"trial {best.number} beats the defaults in {share:.0%} of bootstrap resamples"
    study.set_user_attr("chosen_qini", float(chosen.value))
    study.set_user_attr("choice", choice)
    return dict(chosen.params), study


def beats_beyond_noise(outcome, treated, score, reference, *, resamples: int = 200, seed: int = 0) -> float:
    """Share of paired bootstrap resamples of the rows in which ``score`` has a higher Qini than ``reference``."""
    y, w = np.asarray(outcome, dtype="float64"), np.asarray(treated, dtype="float64")
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        wins += qini_coefficient(y[i], w[i], score[i]) > qini_coefficient(y[i], w[i], reference[i])
    return wins / resamples


# --------------------------------------------------------------------------------------------- truth


def true_effects(rows: pd.DataFrame, spec: UpliftSpec, raw_dir: str | Path | None) -> np.ndarray | None:
    """The simulator's true effect of the offer for each row (ground truth at the as_of month), or None."""
    from training.train import oracle_predictions

    probe = ModelSpec(name=spec.name, label=spec.base.label, kind="binary", primary_metric="qini", calibration_metric="",
                      oracle_column=spec.oracle_column, description="")
    return oracle_predictions(rows, probe, raw_dir)


# --------------------------------------------------------------------------------------------- orchestration


@dataclass
class UpliftResult:
    name: str
    registered_name: str
    version: str
    run_id: str
    split: OutOfTimeSplit
    learner: str
    rows: dict[str, int]
    test: dict[str, float]
    validation_qini: float
    oracle_qini: float | None
    promoted: bool
    gate_reason: str
    seconds: float
    control_pool: str = "contacts"
    warnings: list[str] = field(default_factory=list)
    expected_qini_ratio: float | None = None  # noise-free: true effects ranked by the model / ranked by themselves
    qini_noise: float | None = None  # standard deviation of a random ranking's Qini on the test rows
    choice: str = ""

    def render(self) -> str:
        lines = [
            f"{self.registered_name} v{self.version} (run {self.run_id}): {LEARNER_NAMES.get(self.learner, self.learner)}, LightGBM base learners, control arm from {self.control_pool}",
            f"  split: {self.split.render()}",
            f"  rows (randomized contacts): train {self.rows['train']:,}, validation {self.rows['validation']:,}, test {self.rows['test']:,}",
            f"  validation Qini {self.validation_qini:.5f}; test Qini {self.test['qini']:.5f}"
            + (f", true effect's Qini on the same rows {self.oracle_qini:.5f} (ratio {self.test['qini'] / self.oracle_qini:.2f})"
               if self.oracle_qini else "")
            + (f"; a random ranking's Qini has standard deviation {self.qini_noise:.5f}" if self.qini_noise else ""),
            *([f"  noise-free (true effects of the test rows ranked by the model / by themselves): {self.expected_qini_ratio:.2f}"]
              if self.expected_qini_ratio is not None else []),
            *([f"  learner choice: {self.choice}"] if self.choice else []),
            f"  test observed uplift: top 30% by model {self.test['observed_uplift_top30']:+.4f}, all {self.test['observed_uplift_all']:+.4f}; "
            f"predicted mean {self.test['predicted_uplift_mean']:+.4f}",
            f"  gate: {'PROMOTED to champion' if self.promoted else 'challenger only'}: {self.gate_reason}",
            f"  wall time {self.seconds:.1f} s",
        ]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def read_contacts(raw_dir: Path) -> pd.DataFrame:
    """The raw ``campaign_contacts`` table of ``raw_dir``."""
    from features.raw import find_table

    source = find_table(Path(raw_dir), "campaign_contacts")
    if source is None:
        raise FileNotFoundError(f"{raw_dir} has no campaign_contacts table: uplift needs the bank's randomized contacts")
    return source.read_pandas()


def train_uplift(name: str, config: Config, *, features_path: Path, raw_dir: Path | None = None, trials: int | None = None,
                 progress: bool = True) -> UpliftResult:
    """Tune, evaluate, log and register one uplift model; promote it through the gate when it beats the champion."""
    import mlflow

    from training import registry, tracking
    from training.model_card import render_model_card
    from training.runs import log_run, prefixed

    spec = get_uplift_spec(name)
    settings = config.training
    began = time.perf_counter()
    tracking.configure_tracking(config)
    metadata = read_feature_metadata(features_path)
    check_feature_set(metadata, None, source=str(features_path))
    raw_dir = Path(raw_dir or metadata.get("raw_dir") or config.paths.raw_dir)
    contacts = read_contacts(raw_dir)
    rows, untreated_rows = read_uplift_rows(features_path, contacts, spec, config, max_rows=UNTREATED_SAMPLE_ROWS,
                                            seed=settings.seed)
    if rows.empty:
        raise ValueError(f"no {spec.offer} contacts match a labeled, eligible customer-month of {features_path}")
    split = out_of_time_split(
        as_of_months(rows["as_of"]).unique(), horizon_months=spec.base.label_window_months(config.labels),
        validation_months=settings.validation_months, test_months=settings.test_months, min_train_months=settings.min_train_months,
    )
    train, valid, test = split_frame(rows, split)
    from training.train import categories_of, feature_columns_of

    features = feature_columns_of(rows.drop(columns=["campaign_id", "treated", "outcome"]), metadata)
    categories = categories_of(rows, features, metadata)
    X = {k: prepare_features(part, features, categories) for k, part in (("train", train), ("valid", valid), ("test", test))}
    w = {k: part["treated"].to_numpy() for k, part in (("train", train), ("valid", valid), ("test", test))}
    y = {k: part["outcome"].to_numpy() for k, part in (("train", train), ("valid", valid), ("test", test))}
    propensity = float(np.mean(w["train"]))
    before_test = untreated_rows.loc[as_of_months(untreated_rows["as_of"]) <= split.validation_months[-1]]
    untreated_parts = {
        "train": _pool(untreated_rows.loc[as_of_months(untreated_rows["as_of"]) <= split.train_months[-1]], spec, features, categories),
        "fit": _pool(before_test, spec, features, categories),
    }
    if progress:
        print(f"{spec.name}: {len(rows):,} randomized {spec.offer} contacts with labels; split {split.render()}", flush=True)

    experiment_id = tracking.ensure_experiment(spec.registered_name, config)
    commit = tracking.git_commit()
    with tracking.training_run(experiment_id, run_name=f"{spec.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}") as run:
        log_run(run, tags={"model": spec.name, "git_commit": commit, "features_path": str(features_path), "raw_dir": str(raw_dir)},
                params={"offer": spec.offer, "outcome": f"{'1 - ' if spec.base_model == 'churn' else ''}{spec.base.label}",
                        "rows_train": len(train), "rows_validation": len(valid), "rows_test": len(test),
                        "propensity": propensity, **split.to_params()})
        best, study = search_uplift(X["train"], w["train"], y["train"], X["valid"], w["valid"], y["valid"],
                                    trials=trials or settings.trials, seed=settings.seed, num_threads=settings.num_threads,
                                    on_trial=run.trial_logger(experiment_id, spec.name), progress=progress,
                                    untreated=untreated_parts["train"])
        hp = {**default_uplift_hyperparameters(), **best}
        log_run(run, params={**prefixed("hp_", hp), "rows_untreated_pool": len(untreated_parts["fit"][1])})
        # refit on train + validation with the chosen trees; the test months stay unseen
        fit_X = pd.concat([X["train"], X["valid"]])
        boosters = fit_uplift(fit_X, np.r_[w["train"], w["valid"]], np.r_[y["train"], y["valid"]], hp,
                              num_threads=settings.num_threads, seed=settings.seed, untreated=untreated_parts["fit"])
        fit_w = np.r_[w["train"], w["valid"]]
        propensity = blend_weight(hp, int(fit_w.sum()), int(len(fit_w) - fit_w.sum()), len(untreated_parts["fit"][1]))
        uplift_test = predict_uplift(boosters, X["test"], propensity)
        metrics = uplift_metrics(y["test"], w["test"], uplift_test)
        log_run(run, metrics={**prefixed("test_", metrics), "valid_qini": study.user_attrs["chosen_qini"]})
        truth = true_effects(test, spec, raw_dir)
        oracle_qini = expected_ratio = None
        noise = random_qini_spread(y["test"], w["test"], seed=settings.seed)
        log_run(run, metrics={"test_qini_random_sd": noise})
        warnings: list[str] = []
        if truth is not None:
            ok = ~np.isnan(truth)
            oracle_qini = qini_coefficient(y["test"][ok], w["test"][ok], truth[ok])
            expected_ratio = expected_qini(truth[ok], uplift_test[ok]) / expected_qini(truth[ok], truth[ok])
            log_run(run, metrics={"oracle_qini": oracle_qini, "qini_ratio_to_oracle": metrics["qini"] / oracle_qini if oracle_qini else float("nan"),
                                  "true_uplift_correlation": float(np.corrcoef(uplift_test[ok], truth[ok])[0, 1]),
                                  "expected_qini_ratio_to_oracle": expected_ratio})
        bundle = ModelBundle(spec.name, f"uplift_{hp['learner']}", features, categories, boosters, None, {
            "offer": spec.offer, "propensity": propensity, "learner": hp["learner"], "control_pool": hp["control_pool"],
            "split": split.to_dict(),
            "run_id": run.run_id, "git_commit": commit, "test_months": [str(m) for m in split.test_months],
        })
        model_uri = _log_bundle(bundle, X["test"].head(5))
        figure = _qini_figure(y["test"], w["test"], {"model": uplift_test, **({"true effect": np.nan_to_num(truth)} if truth is not None else {})})
        log_run(run, figures={"qini_curve": figure})
        version = registry.register_challenger(spec.gate_spec(), model_uri, run_id=run.run_id, tags={
            "test_qini": f"{metrics['qini']:.8f}", "test_ate_abs_error": f"{metrics['ate_abs_error']:.8f}",
            "test_months": f"{split.test_months[0]}..{split.test_months[-1]}", "learner": hp["learner"]})
        promoted, reason = _gate(spec, version, metrics, split, config, test=test, outcome=y["test"], treated=w["test"], uplift=uplift_test)
        log_run(run, tags={"registered_model": spec.registered_name, "registered_version": version, "promoted": promoted})
        card = _card(spec, hp, split, {"train": len(train), "validation": len(valid), "test": len(test)}, metrics, oracle_qini,
                     study.user_attrs["chosen_qini"], features, version, run.run_id, reason)
        log_run(run, texts={"model_card.md": render_model_card(card)})
    return UpliftResult(spec.name, spec.registered_name, version, run.run_id, split, hp["learner"],
                        {"train": len(train), "validation": len(valid), "test": len(test)}, metrics, float(study.user_attrs["chosen_qini"]),
                        oracle_qini, promoted, reason, time.perf_counter() - began,
                        "randomized controls and every untreated customer-month" if hp["control_pool"] == "all" else "randomized controls",
                        warnings, expected_ratio, noise, study.user_attrs["choice"])


def _log_bundle(bundle: ModelBundle, rows: pd.DataFrame) -> str:
    """Log the treated-arm (shift learner: no-offer) booster as the MLflow model with the whole uplift bundle inside it; returns its URI."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    from serving.runtime.bundle import encode_categories, numeric_booster
    from training.tracking import pip_requirements

    booster = numeric_booster(bundle.boosters.get("treated", bundle.boosters["control"]))
    example = encode_categories(rows)
    info = mlflow.lightgbm.log_model(booster, name="model", input_example=example, pip_requirements=pip_requirements())
    with tempfile.TemporaryDirectory() as tmp:
        bundle.save(Path(tmp) / "bundle")
        MlflowClient().log_model_artifacts(info.model_id, str(Path(tmp) / "bundle"), artifact_path="bundle")
    return info.model_uri


#: The share of paired bootstrap resamples of the test contacts in which a challenger's Qini must beat the
#: champion's (on the same rows) to replace it: one quarter's Qini difference is mostly noise.
GATE_BOOTSTRAP_SHARE = 0.9


def beyond_noise(reason: str, outcome, treated, uplift, incumbent, *, champion: str = "the champion", seed: int = 0) -> tuple[bool, str]:
    """Whether a challenger that passed the point comparison (``reason``) also beats the champion beyond the noise:
    its Qini (``uplift``) is higher than the champion's (``incumbent``, on the same rows) in at least
    :data:`GATE_BOOTSTRAP_SHARE` of paired bootstrap resamples. Returns (promote, reason)."""
    share = beats_beyond_noise(outcome, treated, np.asarray(uplift), np.asarray(incumbent), seed=seed)
    if share < GATE_BOOTSTRAP_SHARE:
        return False, (f"{reason}; but its Qini beats {champion}'s on the same test contacts in only {share:.0%} of paired "
                       f"bootstrap resamples (needs {GATE_BOOTSTRAP_SHARE:.0%}): a difference within the noise")
    return True, f"{reason}; it beats {champion} in {share:.0%} of paired bootstrap resamples of the test contacts"


def _gate(spec: UpliftSpec, version: str, metrics: dict, split: OutOfTimeSplit, config: Config, *,
          test: pd.DataFrame, outcome: np.ndarray, treated: np.ndarray, uplift: np.ndarray) -> tuple[bool, str]:
    """The promotion gate of :func:`training.registry.decide`, on the champion's test Qini from the same months,
    and beyond the noise: the champion is rescored on the same test contacts, and the challenger replaces it only if
    its Qini is higher in at least :data:`GATE_BOOTSTRAP_SHARE` of paired bootstrap resamples of them."""
    from training import registry
    from serving.runtime.bundle import load_bundle

    client = registry._client()
    champion_version = registry.alias_version(spec.registered_name, registry.CHAMPION)
    champion = None
    months = f"{split.test_months[0]}..{split.test_months[-1]}"
    if champion_version:
        tags = client.get_model_version(spec.registered_name, champion_version).tags
        if tags.get("test_months") == months:
            champion = {"qini": float(tags["test_qini"]), "ate_abs_error": float(tags["test_ate_abs_error"])}
    # Qini is a per-row area of the order of 1e-3: the configured margin is read as a relative improvement
    promotion = config.promotion
    if champion is not None:
        promotion = promotion.model_copy(update={"margin": promotion.margin * abs(champion["qini"])})
    promoted, reason = registry.decide(spec.gate_spec(), metrics, champion, promotion)
    if champion is not None and promoted:
        incumbent = bundle_uplift(load_bundle(f"models:/{spec.registered_name}/{champion_version}"), test)
        promoted, reason = beyond_noise(reason, outcome, treated, uplift, incumbent, champion=f"champion v{champion_version}",
                                        seed=config.training.seed)
    if champion_version and champion is None:
        promoted, reason = True, f"champion v{champion_version} was tested on other months than {months}: the newer data wins"
    if promoted:
        client.set_registered_model_alias(spec.registered_name, registry.CHAMPION, version)
    registry.append_audit(config, {"event": "promote" if promoted else "refuse", "registered_name": spec.registered_name,
                                   "challenger_version": version, "champion_before": champion_version,
                                   "champion_after": version if promoted else champion_version, "reason": reason,
                                   "metrics": metrics})
    return promoted, reason


def _qini_figure(outcome, treated, scores: dict[str, np.ndarray]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4.5))
    for label, score in scores.items():
        share, q = qini_curve(outcome, treated, score)
        ax.plot(share, q, label=f"{label} (Qini {qini_coefficient(outcome, treated, score):.4f})")
    share, q = qini_curve(outcome, treated, np.zeros(len(outcome)))
    ax.plot([0, 1], [0, q[-1]], "k--", label="random")
    ax.set_xlabel("share of contacts targeted (by predicted uplift)")
    ax.set_ylabel("incremental successes")
    ax.set_title("Qini curve on the test months")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


def _card(spec, hp, split, rows, metrics, oracle_qini, valid_qini, features, version, run_id, reason) -> dict:
    return {
        "model": {"name": spec.name, "task": spec.description, "registered_name": spec.registered_name, "version": version,
                  "run_id": run_id, "algorithm": f"{LEARNER_NAMES.get(hp['learner'], hp['learner'])} with LightGBM base learners, tuned with Optuna TPE on validation Qini",
                  "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "beats_baseline": bool(metrics["qini"] > 0),
        "intended_use": spec.description + " Targeting by uplift x value minus costs (custbase campaign).",
        "data": {"feature_set": {"columns": features}, "rows": rows,
                 "population": f"randomized {spec.offer} contacts (targeted campaigns and exploration samples), labeled"},
        "splits": {"train": [str(m) for m in split.train_months], "validation": [str(m) for m in split.validation_months],
                   "test": [str(m) for m in split.test_months], "gap_months": split.horizon_months},
        "metrics": {"test": metrics, "baseline": {"qini": 0.0}, "baseline_name": "random targeting",
                    "oracle": {"qini": oracle_qini} if oracle_qini is not None else {}},
        "primary_metric": "qini",
        "hyperparameters": {**hp, "validation_qini": valid_qini},
        "limitations": [f"gate: {reason}", "Uplift is learned from few randomized contacts per month: the test Qini is noisy; "
                        "read campaigns out against their holdout (custbase campaign readout)."],
    }


# --------------------------------------------------------------------------------------------- use


def champion_uplift_bundles(config: Config) -> dict[str, ModelBundle]:
    """The champion uplift bundle of each offer that has one (``{"retention": ..., "upgrade": ...}``)."""
    from training import registry, tracking
    from serving.runtime.bundle import load_bundle

    tracking.configure_tracking(config)
    found = {}
    for spec in UPLIFT_SPECS.values():
        if registry.alias_version(spec.registered_name, registry.CHAMPION):
            found[spec.offer] = load_bundle(f"models:/{spec.registered_name}@{registry.CHAMPION}")
    return found


def with_uplift(frame: pd.DataFrame, bundles: dict[str, ModelBundle]) -> pd.DataFrame:
    """``frame`` plus ``retention_uplift`` / ``upgrade_uplift`` from the given bundles (a new frame)."""
    columns = {f"{offer}_uplift": bundle_uplift(bundle, frame) for offer, bundle in bundles.items()}
    return frame.assign(**columns)
