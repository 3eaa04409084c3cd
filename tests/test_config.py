"""The typed configuration: defaults, YAML overrides, and errors that say what is wrong."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from custbase.config import Config, ConfigError, load_config


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


def test_unknown_field_is_refused_by_name_with_the_closest_setting(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("labels:\n  churn_horizon: 6\n")
    with pytest.raises(ConfigError, match=r"labels\.churn_horizon is not a setting; did you mean labels\.churn_horizon_months\?"):
        load_config(path)


def test_unknown_section_and_bad_value_are_one_line_each(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("trainng:\n  trials: 3\nlabels:\n  clv_horizon_months: twelve\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "trainng is not a setting; did you mean training?" in message
    assert "labels.clv_horizon_months: " in message and "'twelve'" in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("labels:\n  churn_horizon_months: [3\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_tiers_must_increase(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("value_tiers:\n  lower_bounds: [0, 500000, 50000, 6000000]\n")
    with pytest.raises(ConfigError, match="value_tiers: value_tiers.lower_bounds must start at 0 and increase"):
        load_config(path)


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(Path("nope.yaml"))


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        Config().labels.churn_horizon_months = 4


def test_policy_tiers_must_be_value_tiers(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text("policy:\n  key_customer_tiers: [private, platinum]\n")
    with pytest.raises(ConfigError, match="policy.key_customer_tiers names 'platinum', which is not a value tier"):
        load_config(path)
