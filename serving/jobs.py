"""The serving jobs behind the CLI: build the bento, score the base, write campaign lists.

Everything here is glue at the edge: it finds the pinned champions in the MLflow registry, the newest custbase
bento in the BentoML store, and the paths of the configuration, then calls the one scoring function through
:func:`serving.batch.score_base`.
"""

from __future__ import annotations

import json
from pathlib import Path

from custbase.config import Config
from serving.batch import BatchSummary, read_scores, score_base
from serving.bento import BENTO_NAME, build_bento, configure_bentoml_home
from serving.campaign import CampaignSummary, campaign_list, write_campaign
from serving.models import MODEL_NAMES, REGISTERED_NAMES, ScoringModels, load_champions_from_bento
from serving.spec import SPEC_FILE, ServingSpec


class ServingSetupError(RuntimeError):
    """A step that serving needs has not been run yet (no champion, no bento, no scores)."""


def pinned_champions(config: Config) -> dict[str, str]:
    """``{"churn": "models:/custbase-churn/<version>", ...}``: the champion versions now, pinned by number."""
    from training import tracking
    from training.registry import CHAMPION, alias_version

    tracking.configure_tracking(config)
    uris, missing = {}, []
    for name in MODEL_NAMES:
        version = alias_version(REGISTERED_NAMES[name], CHAMPION)
        if version is None:
            missing.append(name)
        else:
            uris[name] = f"models:/{REGISTERED_NAMES[name]}/{version}"
    if missing:
        steps = "; ".join(f"custbase train {m} && custbase promote {m}" for m in missing)
        raise ServingSetupError(f"no champion for {', '.join(missing)} in the MLflow registry: run {steps}")
    return uris


def build(config: Config) -> str:
    """Import the pinned champions into the BentoML store and build the bento; returns its tag."""
    from features.feature_set import FEATURE_SETS

    feature_set = FEATURE_SETS[config.features.feature_set].as_dict()
    return build_bento(
        config,
        pinned_champions(config),
        policy=config.policy,
        feature_set=feature_set,
        snapshot_path=str(config.paths.online_snapshot.resolve()),
    )


def latest_bento(tag: str | None = None) -> tuple[str, ServingSpec]:
    """The newest ``custbase`` bento (or ``tag``) and the serving spec packed in it."""
    configure_bentoml_home()
    import bentoml

    try:
        bento = bentoml.get(tag or f"{BENTO_NAME}:latest")
    except bentoml.exceptions.NotFound:
        raise ServingSetupError("no custbase bento in the BentoML store: run `custbase build` first") from None
    spec_path = Path(bento.path_of("src")) / SPEC_FILE
    return str(bento.tag), ServingSpec.model_validate(json.loads(spec_path.read_text()))


def bento_models(tag: str | None = None) -> tuple[ScoringModels, str]:
    """The three models packed in the newest bento (the same ones the online service serves)."""
    bento_tag, spec = latest_bento(tag)
    return load_champions_from_bento(spec.refs()), bento_tag


def score(
    config: Config,
    *,
    as_of: str,
    out: Path,
    raw: Path | None = None,
    features_path: Path | None = None,
    engine: str = "local",
    reasons: str = "action",
) -> BatchSummary:
    """Score every customer active at ``as_of`` with the bento's models; build the month's features if needed."""
    if features_path is None:
        if raw is None:
            raise ValueError("give --raw (raw tables to build the month's features from) or --features (a prepared table)")
        from features.build import build_customer_months

        features_path = config.paths.data_dir / f"features_{as_of}.parquet"
        build_customer_months(raw, features_path, config, start=as_of, end=as_of,
                              engine="spark" if engine == "spark" else "duckdb")
    models, _ = bento_models()
    uplift = None
    if engine == "local":  # the champion uplift models, when registered, price each customer's offer
        from functools import partial

        from training.uplift import bundle_uplift, champion_uplift_bundles

        uplift = {offer: partial(bundle_uplift, bundle) for offer, bundle in champion_uplift_bundles(config).items()} or None
    return score_base(
        Path(features_path), models, config.policy, out, as_of=as_of, engine=engine, reasons=reasons,
        snapshot_path=config.paths.online_snapshot, uplift=uplift,
    )


def month_features(features_path: Path, as_of) -> "pd.DataFrame":
    """The customer-month rows of one as_of month from a feature table."""
    import pandas as pd
    import pyarrow.parquet as pq

    month = pd.Period(pd.Timestamp(as_of), "M")
    table = pq.read_table(features_path)
    frame = table.to_pandas()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    rows = frame.loc[frame["as_of"].dt.to_period("M") == month].reset_index(drop=True)
    if rows.empty:
        raise ServingSetupError(f"feature table {features_path} has no rows at as_of {month}: build that month's features")
    return rows


def campaign(config: Config, kind: str, *, out: Path, budget: int | None = None, budget_amount: float | None = None,
             scores_dir: Path | None = None, features_path: Path | None = None) -> tuple[Path, CampaignSummary]:
    """Write the ``kind`` campaign list of the scored month (CSV) and its summary (JSON beside it).

    The scores give risk, propensity and CLV; the month's features give the balances the offer cost scales with
    and, through the champion uplift models when registered, each customer's uplift.
    """
    from training.uplift import champion_uplift_bundles, with_uplift

    folder = Path(scores_dir or config.paths.scores_dir)
    if not (folder / "_SUCCESS").exists():
        raise ServingSetupError(f"no complete scores in {folder}: run `custbase score` first")
    scores = read_scores(folder)
    features = month_features(Path(features_path or config.paths.features_path), scores["as_of"].max())
    features = with_uplift(features, champion_uplift_bundles(config))
    extra = [c for c in ("aum_month_end", "retention_uplift", "upgrade_uplift") if c in features.columns]
    frame = scores.merge(features[["customer_id", *extra]], on="customer_id", how="left")
    chosen, summary = campaign_list(frame, kind, config.policy, budget=budget, budget_amount=budget_amount,
                                    currency=config.value_tiers.currency, seed=config.training.seed)
    path, _ = write_campaign(chosen, summary, out)
    return path, summary
