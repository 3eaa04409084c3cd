# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Model report: champion and challenger from MLflow
#
# Reads the MLflow registry of the project (`mlruns/`, or `MLFLOW_TRACKING_URI`): for each model, every registered
# version with its aliases and test metrics, the champion against the newest challenger, the champion's model card
# (with the fairness section) and its logged figures. Run `make demo` (or train and promote) first.

# %%
# %matplotlib inline
import json

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from IPython.display import Markdown, display
from mlflow import MlflowClient

from custbase.notebooks import project_config
from training import tracking
from training.registry import CHALLENGER, CHAMPION, alias_version
from training.spec import SPECS

config = project_config()
print("tracking store:", tracking.configure_tracking(config))
client = MlflowClient()

# %% [markdown]
# ## Every registered version, with its test metrics

# %%
rows = []
for name, spec in SPECS.items():
    aliases: dict[str, list[str]] = {}
    for alias in (CHAMPION, CHALLENGER):
        aliases.setdefault(alias_version(spec.registered_name, alias), []).append(alias)
    for version in client.search_model_versions(f"name='{spec.registered_name}'"):
        metrics = client.get_run(version.run_id).data.metrics
        rows.append({"model": name, "version": int(version.version),
                     "alias": ", ".join(aliases.get(str(version.version), [])),
                     "primary_metric": spec.primary_metric,
                     "test": metrics.get(f"test_{spec.primary_metric}"),
                     "baseline": metrics.get(f"baseline_{spec.primary_metric}"),
                     "oracle": metrics.get(f"oracle_{spec.primary_metric}"),
                     "calibration": metrics.get(f"test_{spec.calibration_metric}"),
                     "run_id": version.run_id})
if not rows:
    raise RuntimeError(f"no registered custbase model in {tracking.tracking_uri(config)}: run `make demo` (or train) first")
versions = pd.DataFrame(rows).sort_values(["model", "version"])
versions

# %% [markdown]
# ## Champion against challenger
#
# The gate (`custbase promote`) compares them on the same newest test months; here, their logged test metrics side
# by side (the same version when the challenger was promoted).

# %%
fig, axes = plt.subplots(1, len(SPECS), figsize=(4 * len(SPECS), 3))
for ax, (name, spec) in zip(axes, SPECS.items()):
    part = versions[versions["model"] == name].set_index("version")
    ax.bar(part.index.astype(str), part["test"], color=["#c55a11" if CHAMPION in a else "#5b9bd5" for a in part["alias"]])
    ax.axhline(part["baseline"].iloc[-1], color="k", ls="--", lw=0.8, label="baseline")
    ax.set(title=f"{name}: test {spec.primary_metric}", xlabel="version (orange: champion)")
    ax.set_ylim(min(part["test"].min(), part["baseline"].min()) * 0.95, 1.0)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The churn champion's model card (with fairness by age band, gender and value tier)

# %%
champion = versions[(versions["model"] == "churn") & versions["alias"].str.contains(CHAMPION)].iloc[0]
card = mlflow.artifacts.load_text(f"runs:/{champion['run_id']}/model_card.md")
display(Markdown(card))

# %% [markdown]
# ## Its calibration and gain figures as logged

# %%
figures = [a.path for a in client.list_artifacts(champion["run_id"], "figures") if a.path.endswith(".png")]
shown = [f for f in figures if any(k in f for k in ("calibration", "gain"))][:2] or figures[:2]
if not shown:
    print("this run logged no figures (training.log_figures is off)")
else:
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4.5), squeeze=False)
    for ax, path in zip(axes[0], shown):
        ax.imshow(plt.imread(mlflow.artifacts.download_artifacts(f"runs:/{champion['run_id']}/{path}")))
        ax.set_title(path, fontsize=9)
        ax.axis("off")
    plt.show()
