"""The typed configuration: defaults, YAML overrides, and errors that say what is wrong."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from custbase.config import Config, load_config


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config == Config()
    assert config.value_tiers.names[0] == "mass" and config.value_tiers.top == "private"


def test_yaml_overrides_only_the_fields_it_names(tmp_path):
    path = tmp_path / "custbase.yaml"
    path.write_text("labels:\n  churn_horizon_months: 6\nvalue_tiers:\n  currency: CZK\n")
    config = load_config(path)
    assert config.labels.churn_horizon_months == 6
    assert config.labels.clv_horizon_months == Config().labels.clv_horizon_months
    assert config.value_tiers.currency == "CZK"


def test_unknown_field_is_refused_by_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("labels:\n  churn_horizon: 6\n")
    with pytest.raises(ValidationError, match="churn_horizon"):
        load_config(path)


def test_tiers_must_increase(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("value_tiers:\n  lower_bounds: [0, 500000, 50000, 6000000]\n")
    with pytest.raises(ValidationError, match="increase"):
        load_config(path)


def test_missing_file_is_named():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Path("nope.yaml"))


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        Config().labels.churn_horizon_months = 4
