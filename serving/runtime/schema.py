"""The score schema, declared once: every column of a score, its type and its meaning.

Everything else derives from :data:`SCORE_FIELDS`: the column order of a score frame
(:data:`SCORE_COLUMNS`), the Arrow schema of batch score files (:func:`arrow_schema`), the Spark schema of the
Spark job (:func:`spark_schema`) and the JSON model of the online endpoint (:func:`score_fields`, which turns the
three ``*_model_version`` columns into one ``model_versions`` object). A new score column is one line here plus the
code that computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["id", "date", "text", "number", "reasons"]


@dataclass(frozen=True)
class ScoreField:
    """One column of a score: ``name``, its ``kind`` and what it means (shown in the API docs and README)."""

    name: str
    kind: Kind
    description: str
    #: May be missing for some customers (JSON null), e.g. the upgrade probability of a top-tier customer.
    nullable: bool = False


SCORE_FIELDS: tuple[ScoreField, ...] = (
    ScoreField("customer_id", "id", "The bank's customer identifier."),
    ScoreField("as_of", "date", "Month end the features describe.", nullable=True),
    ScoreField("value_tier", "text", "Value tier of the customer at as_of."),
    ScoreField("segment", "text", "Value x risk segment (serving.runtime.policy)."),
    ScoreField("recommended_action", "text", "The contact worth most: retain, upgrade_offer, cross_sell, nurture or none."),
    ScoreField("expected_value_of_contact", "number", "Expected value of the recommended action, net of its contact cost."),
    ScoreField("churn_probability", "number", "Calibrated probability of leaving over the churn horizon."),
    ScoreField("upgrade_probability", "number", "Probability of moving up a value tier; null for the top tier.", nullable=True),
    ScoreField("clv_12m", "number", "Expected value contribution over the next 12 months."),
    ScoreField("value_at_risk", "number", "churn_probability x clv_12m."),
    ScoreField("recommended_offer", "text", "Campaign offer worth most: retention, upgrade or none (serving.runtime.campaign)."),
    ScoreField("offer_uplift", "number", "Change in the offer's success probability; null for none.", nullable=True),
    ScoreField("offer_incremental_value", "number", "Expected incremental value of the offer, net of contact and offer costs."),
    ScoreField("churn_reasons", "reasons", "Top reasons behind the churn probability, in words."),
    ScoreField("upgrade_reasons", "reasons", "Top reasons behind the upgrade probability, in words."),
    ScoreField("clv_reasons", "reasons", "Top reasons behind the CLV, in words."),
    ScoreField("churn_model_version", "text", "Registered version of the churn model that scored the row."),
    ScoreField("upgrade_model_version", "text", "Registered version of the upgrade model that scored the row."),
    ScoreField("clv_model_version", "text", "Registered version of the CLV model that scored the row."),
)

#: Columns of a score frame, in order.
SCORE_COLUMNS: tuple[str, ...] = tuple(f.name for f in SCORE_FIELDS)
REASON_COLUMNS: tuple[str, ...] = tuple(f.name for f in SCORE_FIELDS if f.kind == "reasons")
NUMBER_COLUMNS: tuple[str, ...] = tuple(f.name for f in SCORE_FIELDS if f.kind == "number")
#: ``{model: column}`` of the model-version columns, which the API returns as one ``model_versions`` object.
VERSION_COLUMNS: dict[str, str] = {
    f.name.removesuffix("_model_version"): f.name for f in SCORE_FIELDS if f.name.endswith("_model_version")
}


def arrow_schema():
    """Arrow schema of a score file (before a partition column is dropped)."""
    import pyarrow as pa

    types = {"id": pa.int64(), "date": pa.date32(), "text": pa.string(), "number": pa.float64(),
             "reasons": pa.list_(pa.string())}
    return pa.schema([(f.name, types[f.kind]) for f in SCORE_FIELDS])


def spark_schema(extra_text_columns: tuple[str, ...] = ()):
    """Spark schema of scored rows, with ``extra_text_columns`` (a partition column) appended."""
    from pyspark.sql import types as T

    types = {"id": T.LongType(), "date": T.DateType(), "text": T.StringType(), "number": T.DoubleType(),
             "reasons": T.ArrayType(T.StringType())}
    fields = [T.StructField(f.name, types[f.kind], True) for f in SCORE_FIELDS]
    fields += [T.StructField(c, T.StringType(), False) for c in extra_text_columns if c not in SCORE_COLUMNS]
    return T.StructType(fields)


def score_fields() -> dict[str, tuple[Any, Any]]:
    """``{name: (type, pydantic Field)}`` of the API's score object, for ``pydantic.create_model``."""
    import datetime as dt
    from typing import Optional

    from pydantic import Field

    types = {"id": int, "date": dt.date, "text": str, "number": float, "reasons": list[str]}
    out: dict[str, tuple[Any, Any]] = {}
    for f in SCORE_FIELDS:
        if f.name in VERSION_COLUMNS.values():
            continue
        kind = types[f.kind]
        out[f.name] = (Optional[kind], Field(None, description=f.description)) if f.nullable \
            else (kind, Field(..., description=f.description))
    out["model_versions"] = (dict[str, str], Field(..., description="Registered version of each model: "
                                                   + ", ".join(VERSION_COLUMNS) + "."))
    return out
