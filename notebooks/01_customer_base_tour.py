# %% [markdown]
# # A tour of the customer base after `make demo`
#
# Percent-format notebook (opens in Jupyter with jupytext, or in VS Code; `python notebooks/01_customer_base_tour.py`
# runs it as a script and writes the figures to `data/demo/tour/`). It holds no reusable code: everything comes from
# the installed packages and the demo's outputs.

# %%
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from custbase.config import load_config
from features.definitions import in_churn_population
from features.feature_set import read_feature_table
from serving.batch import read_scores

config = load_config()
demo = Path("data/demo")
out = demo / "tour"
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Value is concentrated: most customers are mass, a few hold most of the assets

# %%
months, metadata = read_feature_table(demo / "customer_months.parquet")
latest = months[months["as_of"] == months["as_of"].max()]
by_tier = latest.groupby("value_tier", observed=True)["aum_month_end"].agg(["size", "sum"])
by_tier["customer_share"] = by_tier["size"] / by_tier["size"].sum()
by_tier["aum_share"] = by_tier["sum"] / by_tier["sum"].sum()
print(by_tier.loc[list(config.value_tiers.names), ["customer_share", "aum_share"]].round(3))

# %% [markdown]
# ## Churn and upgrade rates by month (labels are null where the horizon runs past the data)

# %%
eligible = months[in_churn_population(months)]  # not quiet at as_of: the churn label's population
rates = pd.DataFrame({
    "churn_3m": eligible.groupby("as_of")["churn_3m"].mean(),
    "upgrade_3m": months.groupby("as_of")["upgrade_3m"].mean(),
})
ax = rates.plot(figsize=(9, 3.5), title="3-month churn and upgrade rates by as_of month")
ax.set_ylabel("rate")
plt.tight_layout()
plt.savefig(out / "label_rates.png", dpi=120)

# %% [markdown]
# ## The value x risk matrix the campaign teams act on

# %%
scores = read_scores(demo / "scores")
print(pd.crosstab(scores["segment"], scores["recommended_action"]))
fig, ax = plt.subplots(figsize=(6, 4.5))
for segment, group in scores.groupby("segment"):
    ax.scatter(group["clv_12m"].clip(lower=1), group["churn_probability"], s=6, alpha=0.5, label=segment)
ax.set(xscale="log", xlabel="predicted 12-month CLV", ylabel="churn probability", title="Segments")
ax.legend(markerscale=3, fontsize=8)
plt.tight_layout()
plt.savefig(out / "segments.png", dpi=120)
print(f"figures in {out}")
