"""The serving jobs behind the CLI: build the bento, score the base, write campaign lists.

Everything here is glue at the edge: it finds the pinned champions in the MLflow registry, the newest custbase
bento in the BentoML store, and the paths of the configuration, then calls the one scoring function through
:func:`serving.batch.score_base`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from custbase import hints
from custbase.config import Config

if TYPE_CHECKING:
    from serving.batch import BatchSummary
    from serving.runtime.models import ScoringModels
    from serving.runtime.spec import ServingSpec
    from serving.runtime.campaign import CampaignSummary

# The serving modules (bentoml, pandas, lightgbm) are imported inside the jobs, after the checks that need none
# of them: a missing bento or missing scores is reported at once.
BENTO_NAME = "custbase"  # serving.bento.BENTO_NAME (a test keeps the two in step)


class ServingSetupError(RuntimeError):
    """A step that serving needs has not been run yet (no champion, no bento, no scores)."""


def pinned_champions(config: Config, *, challenger_if_no_champion: bool = False) -> tuple[dict[str, str], list[str]]:
    """``{"churn": "models:/custbase-churn/<version>", ...}``: the champion versions now, pinned by number.

    With ``challenger_if_no_champion`` (the demo only), a model with no champion is pinned at its challenger
    instead, and named in the second value; otherwise a missing champion is an error.
    """
    from serving.runtime.models import MODEL_NAMES
    from training import tracking
    from training.registry import CHALLENGER, CHAMPION

    tracking.configure_tracking(config)
    uris, missing, stand_ins = {}, [], []
    for name in MODEL_NAMES:
        uri = _pinned(name, CHAMPION)
        if uri is None and challenger_if_no_champion:
            uri = _pinned(name, CHALLENGER)
            if uri is not None:
                stand_ins.append(name)
        if uri is None:
            missing.append(name)
        else:
            uris[name] = uri
    if missing:
        steps = " && ".join(f"{hints.custbase(f'train {m}')} && {hints.custbase(f'promote {m}')}" for m in missing)
        raise ServingSetupError(f"no champion for {', '.join(missing)} in the MLflow registry: run {steps}")
    return uris, stand_ins


def pinned_uplift_champions(config: Config) -> dict[str, str]:
    """``{"retention-uplift": "models:/custbase-retention-uplift/<version>", ...}`` for each uplift model with a
    champion (none is required: an offer without one is priced by the policy's rule of thumb)."""
    from serving.runtime.uplift import UPLIFT_MODEL_NAMES
    from training import tracking
    from training.registry import CHAMPION

    tracking.configure_tracking(config)
    return {name: uri for name in UPLIFT_MODEL_NAMES.values() if (uri := _pinned(name, CHAMPION)) is not None}


def _pinned(name: str, alias: str) -> str | None:
    """``models:/custbase-<name>/<version>`` of the version ``alias`` points to, or None (tracking configured)."""
    from serving.runtime.models import REGISTERED_NAMES
    from training.registry import alias_version

    version = alias_version(REGISTERED_NAMES[name], alias)
    return None if version is None else f"models:/{REGISTERED_NAMES[name]}/{version}"


def build(config: Config, *, challenger_if_no_champion: bool = False) -> str:
    """Import the pinned champions (and the champion uplift models) into the BentoML store and build the bento;
    returns its tag."""
    from features.feature_set import FEATURE_SETS
    from serving.bento import build_bento

    feature_set = FEATURE_SETS[config.features.feature_set].as_dict()
    uris, _ = pinned_champions(config, challenger_if_no_champion=challenger_if_no_champion)
    return build_bento(
        config,
        {**uris, **pinned_uplift_champions(config)},
        policy=config.policy,
        feature_set=feature_set,
        snapshot_path=str(config.paths.online_snapshot.resolve()),
    )


def _bentoml_home() -> Path:
    # where serving.bento.configure_bentoml_home puts the store; read here so that a failed look-up creates nothing
    return Path(os.environ.get("BENTOML_HOME") or "bentoml_home")


def require_bento() -> None:
    """Raise (creating nothing) when the BentoML store holds no custbase bento."""
    if not (_bentoml_home() / "bentos" / BENTO_NAME).is_dir():
        raise ServingSetupError(f"no custbase bento in the BentoML store {_bentoml_home()}: build one with `{hints.make('build')}`")


def latest_bento(tag: str | None = None) -> tuple[str, ServingSpec]:
    """The newest ``custbase`` bento (or ``tag``) and the serving spec packed in it."""
    require_bento()
    from serving.bento import configure_bentoml_home
    from serving.runtime.spec import SPEC_FILE, ServingSpec

    configure_bentoml_home()
    import bentoml

    try:
        bento = bentoml.get(tag or f"{BENTO_NAME}:latest")
    except bentoml.exceptions.NotFound:
        if tag:
            known = ", ".join(str(b.tag) for b in bentoml.list(BENTO_NAME)[:5]) or "none"
            raise ServingSetupError(f"no bento {tag} in the BentoML store {_bentoml_home()}; custbase bentos there: "
                                    f"{known}; build one with `{hints.make('build')}`") from None
        raise ServingSetupError(f"no bento {BENTO_NAME}:latest in the BentoML store {_bentoml_home()}: build one with "
                                f"`{hints.make('build')}` (`bentoml list` shows what there is)") from None
    spec_path = Path(bento.path_of("src")) / SPEC_FILE
    return str(bento.tag), ServingSpec.model_validate(json.loads(spec_path.read_text()))


def bento_models(tag: str | None = None) -> tuple[ScoringModels, str]:
    """The three models packed in the newest bento (the same ones the online service serves)."""
    bento_tag, spec = latest_bento(tag)
    return _bento_champions(spec), bento_tag


def _bento_champions(spec: ServingSpec) -> ScoringModels:
    """The models a bento's serving spec pins, from the BentoML store."""
    from serving.runtime.models import ModelStoreError, load_champions_from_bento

    try:
        return load_champions_from_bento(spec.refs())
    except ModelStoreError as err:
        raise ServingSetupError(str(err)) from None


@dataclass(frozen=True)
class ScorePlan:
    """What a scoring run will read and write, decided (and printed) before any slow work."""

    as_of: str
    out: Path
    features_path: Path
    raw: Path | None = None  # build ``features_path`` from these raw tables first
    snapshot: Path | None = None  # the online feature snapshot to refresh; None: left as it is
    snapshot_note: str = ""

    def render(self) -> str:
        lines = [f"scoring the customers active at {self.as_of} -> {self.out}"]
        if self.raw is not None:
            lines.append(f"  building the month's features from {self.raw} into {self.features_path}")
        else:
            lines.append(f"  features from {self.features_path}")
        lines.append(f"  online feature snapshot: {self.snapshot_note}")
        return "\n".join(lines)


def score_plan(
    config: Config,
    *,
    as_of: str | None = None,
    out: Path | None = None,
    raw: Path | None = None,
    features_path: Path | None = None,
) -> ScorePlan:
    """Decide the month, the input and the outputs of a scoring run; raises before any slow work.

    The online snapshot (``paths.online_snapshot``) is refreshed only when the scores go to ``paths.scores_dir``:
    scores written elsewhere (a test, a what-if) leave the serving state alone.
    """
    out = Path(out or config.paths.scores_dir)
    if raw is not None:
        if as_of is None:
            raise ValueError("scoring from raw tables needs the month: --as-of YYYY-MM")
        features_path = config.paths.data_dir / f"features_{as_of}.parquet"
    else:
        from features.feature_set import read_feature_metadata

        features_path = Path(features_path or config.paths.features_path)
        metadata = read_feature_metadata(features_path)
        first, last = str(metadata["as_of_min"])[:7], str(metadata["as_of_max"])[:7]
        as_of = as_of or last
        if not first <= as_of <= last:
            raise ValueError(f"{features_path} holds as_of months {first}..{last}, not {as_of}: pick one of those, "
                             f"or score from raw tables with --raw DIR --as-of {as_of}")
    if out.resolve() == Path(config.paths.scores_dir).resolve():
        snapshot, note = Path(config.paths.online_snapshot), f"refreshed at {config.paths.online_snapshot} (paths.online_snapshot)"
    else:
        snapshot, note = None, (f"left as it is ({out} is not paths.scores_dir {config.paths.scores_dir}, "
                                f"so these scores do not feed the online endpoint)")
    for folder, what in ((out, "--out"), *(((snapshot.parent, "paths.online_snapshot's folder"),) if snapshot else ())):
        _check_writable(folder, what)
    return ScorePlan(as_of=as_of, out=out, features_path=Path(features_path), raw=raw, snapshot=snapshot, snapshot_note=note)


def score(config: Config, plan: ScorePlan, *, engine: str = "local", reasons: str = "action") -> BatchSummary:
    """Score every customer active at ``plan.as_of`` with the bento's models; build the month's features if needed."""
    if plan.raw is not None:
        from features.build import build_customer_months

        build_customer_months(plan.raw, plan.features_path, config, start=plan.as_of, end=plan.as_of,
                              engine="spark" if engine == "spark" else "duckdb")
    from features.feature_set import check_feature_set, read_feature_metadata
    from serving.batch import score_base

    _, spec = latest_bento()
    # the models read the columns of the feature set they were trained on: a table of another version is refused
    check_feature_set(read_feature_metadata(plan.features_path), spec.feature_set, source=str(plan.features_path),
                      expected_by="the bento's models")
    models = _bento_champions(spec)  # with the bento's uplift models: the online service prices offers the same way
    summary = score_base(
        plan.features_path, models, config.policy, plan.out, as_of=plan.as_of, engine=engine, reasons=reasons,
        snapshot_path=plan.snapshot,
    )
    from serving.monitoring import monitor_scoring_run

    monitor_scoring_run(config, features_path=plan.features_path, as_of=plan.as_of, scores_dir=plan.out, models=models)
    return summary


def _check_writable(folder: Path, what: str) -> None:
    """Fail at once, in one line, when ``folder`` cannot be created or written (before any slow work)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ServingSetupError(f"cannot write to {folder} ({what}): {err.strerror or err}; choose a writable folder") from None


def _campaign_uplift(features, config: Config) -> dict:
    """Both offers' uplift columns for a campaign: from the newest bento's uplift models (those that priced the
    scores), or, with no bento, from the champion uplift models in the registry."""
    from serving.runtime.models import load_uplift_from_bento, uplift_model
    from serving.runtime.scoring import uplift_columns

    try:
        uplift = load_uplift_from_bento(latest_bento()[1].refs())
    except ServingSetupError:
        from training.uplift import champion_uplift_bundles

        uplift = {offer: uplift_model(bundle, "champion") for offer, bundle in champion_uplift_bundles(config).items()}
    return uplift_columns(features, uplift)


def campaign(config: Config, kind: str, *, out: Path, budget: int | None = None, budget_amount: float | None = None,
             scores_dir: Path | None = None, features_path: Path | None = None) -> tuple[Path, CampaignSummary]:
    """Write the ``kind`` campaign list of the scored month (CSV) and its summary (JSON beside it).

    The scores give risk, propensity and CLV; the month's features give the balances the offer cost scales with
    and, through the uplift models of the bento that scored them, each customer's uplift of both offers (the
    scores carry only the recommended offer's), so that the list and the scores price offers alike.
    """
    folder = Path(scores_dir or config.paths.scores_dir)
    if not (folder / "_SUCCESS").exists():
        raise ServingSetupError(f"no complete scores in {folder}: score the base first with `{hints.make('score')}`")
    import pandas as pd

    from serving.batch import read_scores, select_month
    from serving.runtime.campaign import campaign_list, write_campaign

    scores = read_scores(folder)
    path = Path(features_path or config.paths.features_path)
    try:  # any parquet with the month's rows will do: only balances and the uplift models' features are read
        from features.feature_set import read_feature_table

        table = read_feature_table(path)[0] if path.is_dir() else pd.read_parquet(path)  # a folder: what its manifest names
        features = select_month(table, scores["as_of"].max()).reset_index(drop=True)
    except ValueError as err:  # the scored month is not in the table
        raise ServingSetupError(str(err)) from None
    features = features.assign(**_campaign_uplift(features, config))
    extra = [c for c in ("aum_month_end", "retention_uplift", "upgrade_uplift") if c in features.columns]
    frame = scores.merge(features[["customer_id", *extra]], on="customer_id", how="left")
    chosen, summary = campaign_list(frame, kind, config.policy, budget=budget, budget_amount=budget_amount,
                                    currency=config.value_tiers.currency, seed=config.training.seed)
    path, _ = write_campaign(chosen, summary, out)
    return path, summary
