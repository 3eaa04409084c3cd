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
# # A tour of the customer base
#
# Reads the demo's outputs (`make demo`), or the folder named by `CUSTBASE_DATA`, from any working directory.
# It holds no reusable code: the figures come from `serving.report` (the same functions as the HTML base report,
# `make report`) and the tables from the installed packages. `make notebooks` executes it with its outputs.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

from custbase.notebooks import data_dir, project_config
from features.feature_set import read_feature_table
from serving import report
from serving.batch import read_scores
from serving.monitoring import model_population
from training.spec import get_spec

config = project_config()
data = data_dir()
tiers = tuple(config.value_tiers.names)
months, metadata = read_feature_table(data / "customer_months.parquet")
month_of = report.month_key(months["as_of"])
as_of = month_of.max()
previous = sorted(month_of.unique())[-2]
latest, before = months[month_of == as_of], months[month_of == previous]
print(f"{data}: {len(months):,} customer-months, {months['customer_id'].nunique():,} customers, as_of {as_of}")

# %% [markdown]
# ## Tier structure: most customers are mass, a few hold most of the assets

# %%
customers, aum = report.tier_structure(months, tiers)
shares = pd.DataFrame({"customer_share": customers.loc[as_of] / customers.loc[as_of].sum(),
                       "aum_share": aum.loc[as_of] / aum.loc[as_of].sum()})
fig, ax = plt.subplots(figsize=(9, 3.5))
(aum / 1e6).plot.area(ax=ax, title=f"AUM by value tier (million {config.value_tiers.currency})")
plt.show()
shares.round(3)

# %% [markdown]
# ## Tier migration between the last two months (rows: before, columns: after)

# %%
matrix = report.migration_matrix(before, latest, tiers)
print(report.migration_summary(matrix))
matrix

# %% [markdown]
# ## Value concentration: Lorenz curves of AUM and net revenue

# %%
fig, ax = plt.subplots(figsize=(4.5, 4))
for column in ("aum_month_end", "net_revenue_12m"):
    x, y = report.lorenz_curve(latest[column])
    ax.plot(x, y, label=f"{column} (top 10%: {report.top_share(latest[column]):.0%})")
ax.plot([0, 1], [0, 1], "k--", lw=0.7)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Stickiness by tier

# %%
report.stickiness(latest, tiers).round(3)

# %% [markdown]
# ## Churn and upgrade rates by month on each model's population (labels are null where the horizon runs past the data)

# %%
rates = {}
for model in ("churn", "upgrade"):
    label = get_spec(model).label
    population = months.loc[model_population(months, model, config) & months[label].notna().to_numpy()]
    rates[label] = population.groupby("as_of")[label].mean()
label_rates = pd.DataFrame(rates)
label_rates.plot(figsize=(9, 3.5), title="Label rates by as_of month").set_ylabel("rate")
plt.show()

# %% [markdown]
# ## The value x risk matrix the campaign teams act on

# %%
scores = read_scores(data / "scores")
counts, value_at_risk = report.value_risk_matrix(scores)
fig, ax = plt.subplots(figsize=(6, 4.5))
for segment, group in scores.groupby("segment"):
    ax.scatter(group["clv_12m"].clip(lower=1), group["churn_probability"], s=6, alpha=0.5, label=segment)
ax.set(xscale="log", xlabel="predicted 12-month CLV", ylabel="churn probability", title="Segments")
ax.legend(markerscale=3, fontsize=8)
plt.show()
counts
