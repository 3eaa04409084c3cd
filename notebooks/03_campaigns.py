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
# # Campaigns: the lists, the read-out of past campaigns, and the backtest
#
# Reads the demo's outputs (`make demo`) or the folder named by `CUSTBASE_DATA`: the campaign lists of the latest
# scoring run, the raw campaign contacts with their randomized control groups, and the champions in MLflow.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from custbase.notebooks import data_dir, project_config
from features.raw import find_table
from serving import monitoring

config = project_config()
data = data_dir()

# %% [markdown]
# ## The campaign lists of the latest scoring run

# %%
lists = {kind: pd.read_csv(data / "campaigns" / f"{kind}.csv") for kind in ("retention", "upgrade")
         if (data / "campaigns" / f"{kind}.csv").exists()}
summary = pd.DataFrame({kind: {"customers": len(frame), "expected_value": frame["expected_incremental_value"].sum(),
                               "holdout": int(frame["holdout"].sum())} for kind, frame in lists.items()}).T
display(summary.round(0))
if lists:
    fig, axes = plt.subplots(1, len(lists), figsize=(5 * len(lists), 3), squeeze=False)
    for ax, (kind, frame) in zip(axes[0], lists.items()):
        ax.plot(frame["rank"], frame["expected_incremental_value"].cumsum())
        ax.set(title=f"{kind}: cumulative expected incremental value", xlabel="customers contacted (best first)")
    plt.show()

# %% [markdown]
# ## Read-out of past campaigns: take-up of treated customers against their randomized control group
#
# The uplift is the difference in take-up rates; the interval is a normal approximation (95%).

# %%
source = find_table(data / "bank", "campaign_contacts")
contacts = pd.read_parquet(source.path) if source.format == "parquet" else pd.read_csv(source.path)
readout = contacts.groupby(["offer", "treated"])["responded"].agg(["size", "mean"]).unstack("treated")
readout.columns = [f"{stat}_{'treated' if t else 'control'}" for stat, t in readout.columns]
readout["uplift"] = readout["mean_treated"] - readout["mean_control"]
se = np.sqrt(readout["mean_treated"] * (1 - readout["mean_treated"]) / readout["size_treated"]
             + readout["mean_control"] * (1 - readout["mean_control"]) / readout["size_control"])
readout["uplift_low"], readout["uplift_high"] = readout["uplift"] - 1.96 * se, readout["uplift"] + 1.96 * se
ax = readout["uplift"].plot.bar(yerr=1.96 * se, capsize=4, figsize=(6, 3), title="Uplift in take-up by offer")
ax.axhline(0, color="k", lw=0.7)
plt.show()
readout.round(4)

# %% [markdown]
# ## Backtest: matured months scored with the champion of their time, realized against predicted

# %%
backtest_file = data / "monitoring" / monitoring.BACKTEST_FILE
if backtest_file.exists():
    table = pd.read_csv(backtest_file, dtype={"as_of": "str", "model_version": "str"})
else:
    from features.feature_set import read_feature_table

    table = monitoring.backtest_table(read_feature_table(data / "customer_months.parquet")[0],
                                      monitoring.champion_lineages(config), config)
display(monitoring.backtest_figure(table))
table.groupby("model")[["realized", "predicted", "calibration_error", "discrimination"]].mean().round(4)
