"""One vocabulary: every feature is one definition (name, SQL, dtype, family, meaning, reason phrase); the feature
set v1 is pinned; a table of another version is refused with one clear line."""

from __future__ import annotations

import hashlib
import re
import string
import sys

import pandas as pd
import pytest

from custbase.config import Config
from features.contract import TABLES
from features.definitions import Feature, MonthRange, features_for, pipeline
from features.feature_set import (
    CUSTOMER_MONTH_V1,
    FEATURE_SETS,
    FEATURES,
    FeatureSetMismatch,
    read_feature_table,
    render_features,
    write_feature_table,
)
from serving.runtime.reasons import FORMAT_SPECS, say, sentence

#: SHA-256 (16 hex digits) of the whole customer-month SQL for the default configuration (see :func:`_sql_digest`).
V1_SQL_DIGEST = "3ba81ddf499e62fc"
#: Values each dtype is phrased with; None is a missing value.
TYPICAL = {"int64": [0, 1, 3, -1, None], "float64": [0.0, 1.0, 0.35, -0.4, 1234.5, None], "str": ["mass", "high_net_worth", None]}


def _produced() -> list[tuple[str, str]]:
    return [(f.name, f.dtype) for f in features_for(Config(), frozenset(TABLES))]


def _sql_digest() -> str:
    r = MonthRange(first=24000, start=24012, end=24024, last=24030, read_start=24000, read_end=24030)
    steps, final = pipeline(Config(), frozenset(TABLES), r)
    text = "\n".join([*(f"{s.name}\n{s.sql}" for s in steps), final])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- one definition each


def test_every_feature_has_a_meaning_and_a_reason_phrase_that_reads_for_typical_values():
    for name, feature in FEATURES.items():
        assert len(feature.description.strip()) > 10, name
        for template in feature.reason.templates():
            fields = [(field, spec) for _, field, spec, _ in string.Formatter().parse(template) if field is not None]
            assert all(field == "value" and spec in FORMAT_SPECS for field, spec in fields), (name, template)
        for value in TYPICAL[feature.dtype]:
            text = sentence(name, value)
            assert text and not text[0].islower() and "{" not in text and "}" not in text, (name, value, text)
            assert " = " not in text and "nan" not in text.lower().split(), (name, value, text)
            if value is not None:
                assert say(feature.reason, value) == text, (name, value)


def test_loop_generated_columns_are_findable_as_text_in_the_pinned_list():
    source = open(sys.modules["features.feature_set"].__file__).read()
    for name in ("txn_amount_card_spend_3m", "aum_avg_6m", "holds_fund", *CUSTOMER_MONTH_V1.columns):
        assert f'"{name}"' in source, name


def test_adding_a_feature_is_one_definition_as_the_feature_docstring_shows():
    """The example in ``Feature``'s docstring (the README's "how to add a feature") runs and reads well."""
    import features.definitions as definitions

    example = re.search(r"::\n\n(.*?)\n\n", Feature.__doc__, re.S).group(1)
    feature = eval(example.strip(), vars(definitions))  # noqa: S307 - our own docstring
    assert isinstance(feature, Feature) and feature.name == "loans_opened_12m"
    assert say(feature.reason, 2) == "2 loans opened in the last 12 months"
    assert say(feature.reason, 0) == "No loans opened in the last 12 months"
    assert say(feature.reason, 1) == "1 loan opened in the last 12 months"


def test_features_list_prints_every_column_with_family_dtype_and_meaning():
    text = render_features()
    for name, feature in FEATURES.items():
        assert re.search(rf"^{name}\s+{feature.family}\s+{feature.dtype}\s+{re.escape(feature.description)}$", text, re.M), name
    service = render_features("service").splitlines()
    assert len(service) == 1 + 6 + 1 and all(" service " in line for line in service[1:-1])
    with pytest.raises(KeyError, match="families: profile, balances"):
        render_features("nope")


def test_features_list_from_the_cli():
    from typer.testing import CliRunner

    from custbase.cli import app

    result = CliRunner().invoke(app, ["features", "--list", "--family", "products"])
    assert result.exit_code == 0, result.stderr
    assert "holds_fund" in result.stdout and "1 if the customer holds fund." in result.stdout
    assert "txn_count_3m" not in result.stdout


def test_customer_month_v1_is_pinned():
    produced, pinned = _produced(), list(CUSTOMER_MONTH_V1.schema)
    added = [c for c in produced if c[0] not in dict(pinned)]
    removed = [c for c in pinned if c[0] not in dict(produced)]
    retyped = [(n, dict(pinned)[n], d) for n, d in produced if n in dict(pinned) and dict(pinned)[n] != d]
    assert produced == pinned, (
        f"the definitions no longer produce customer_month_v1 (added {added}, removed {removed}, dtype changed {retyped}, "
        "or reordered): v1 is pinned, models and tables depend on it. Add customer_month_v2 in features/feature_set.py "
        "(its own literal column list, registered in FEATURE_SETS) and build with it, instead of editing v1")
    for fs in FEATURE_SETS.values():
        assert fs.digest() == fs.pinned_digest, (
            f"{fs.name}'s pinned column list was edited (digest {fs.digest()} != {fs.pinned_digest}): a pinned feature "
            f"set never changes; add customer_month_v{max(s.version for s in FEATURE_SETS.values()) + 1} instead")
    assert set(CUSTOMER_MONTH_V1.categorical_columns) == {"gender", "city_tier", "income_band", "value_tier", "previous_value_tier"}


def test_customer_month_v1_sql_is_pinned():
    assert _sql_digest() == V1_SQL_DIGEST, (
        "the SQL of the customer-month features or labels changed (digest "
        f"{_sql_digest()}): if any value of customer_month_v1 can change, add customer_month_v2; if the change is "
        "equivalent (a reformatting, a rename inside the SQL), set V1_SQL_DIGEST to the new digest")


# --------------------------------------------------------------------------------------------- version refused


def _table(tmp_path, feature_set) -> str:
    frame = pd.DataFrame({"customer_id": [1], "as_of": pd.to_datetime(["2025-01-31"]), "age": [40.0]})
    return write_feature_table(frame, tmp_path / "features.parquet", {"feature_set": feature_set})


def test_a_table_of_an_unpinned_version_is_refused_in_one_line(tmp_path):
    path = _table(tmp_path, {"name": "customer_month_v2", "version": 2, "columns": ["age"]})
    with pytest.raises(FeatureSetMismatch) as err:
        read_feature_table(path)
    message = str(err.value)
    assert "\n" not in message
    assert "customer_month_v2" in message and "customer_month_v1" in message and "custbase features" in message


def test_a_table_of_another_version_than_the_model_expects_is_refused(tmp_path):
    path = _table(tmp_path, CUSTOMER_MONTH_V1.as_dict())
    read_feature_table(path, feature_set="customer_month_v1")  # the same version: read
    with pytest.raises(FeatureSetMismatch, match="holds feature set customer_month_v1 but the model expects customer_month_v7"):
        read_feature_table(path, feature_set={"name": "customer_month_v7", "version": 7})


def test_a_v1_table_with_columns_v1_lacks_is_refused(tmp_path):
    path = _table(tmp_path, {"name": "customer_month_v1", "version": 1, "columns": ["age", "age_squared"]})
    with pytest.raises(FeatureSetMismatch, match="age_squared"):
        read_feature_table(path)


@pytest.mark.parametrize("feature_set", [{"name": "prepared:loans.csv", "version": 1, "columns": ["x"]}, "test", None])
def test_tables_outside_the_pinned_families_are_read(tmp_path, feature_set):
    frame, metadata = read_feature_table(_table(tmp_path, feature_set))
    assert len(frame) == 1 and metadata["feature_set"] == feature_set
