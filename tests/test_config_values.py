"""Federation config values are type- and range-checked, each error naming the field and the value."""

from __future__ import annotations

import json

import pytest

from fedgrow_hf.experiment.config import ConfigError, FederationConfig, check_values
from fedgrow_hf.reproduce.presets import preset_config


def _raw(**federation) -> dict:
    raw = preset_config("tiny", "/data")
    raw["federation"].update(federation)
    return raw


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("federation", "max_update_bytes", -5, "federation.max_update_bytes=-5 must be >= 0"),
        ("federation", "round_retries", -4, "federation.round_retries=-4 must be >= 0"),
        ("federation", "dp_noise_multiplier", -1, "federation.dp_noise_multiplier=-1 must be >= 0"),
        ("federation", "local_steps", 1.5, "federation.local_steps=1.5 must be an integer"),
        ("federation", "rounds", "3", "federation.rounds='3' must be an integer"),
        ("federation", "rounds", True, "federation.rounds=True must be an integer"),
        ("federation", "max_num_examples", 0, "federation.max_num_examples=0 must be >= 1"),
        ("federation", "update_norm_bound", -0.5, "federation.update_norm_bound=-0.5 must be >= 0"),
        ("federation", "trim_fraction", 0.5, r"federation.trim_fraction=0.5 must be in \[0, 0.5\)"),
        ("federation", "dp_clipping_norm", 0, "federation.dp_clipping_norm=0 must be > 0"),
        ("federation", "server_learning_rate", 0, "federation.server_learning_rate=0 must be > 0"),
        ("federation", "server_learning_rate", float("inf"), "federation.server_learning_rate=inf must be a finite number"),
        ("federation", "round_timeout", 0, "federation.round_timeout=0 must be > 0"),
        ("federation", "round_timeout", float("nan"), "federation.round_timeout=nan must be a finite number"),
        ("federation", "finetune_steps", 0, "federation.finetune_steps=0 must be >= 1"),
        ("federation", "finetune_rounds", 0, "federation.finetune_rounds=0 must be >= 1"),
        ("federation", "aggregator", 3, "federation.aggregator=3 must be a string"),
        ("model", "num_labels", 0, "model.num_labels=0 must be >= 2"),
        ("model", "intermediate", {"hidden_size": "32"}, r"model.intermediate=.* must be a table \(each value an integer\)"),
        ("data", "limit", 0, "data.limit=0 must be >= 1"),
        ("data", "limit", 2.0, "data.limit=2.0 must be an integer or absent"),
        ("data", "alpha", 0, "data.alpha=0 must be > 0"),
        ("data", "eval_fraction", 1, r"data.eval_fraction=1 must be in \(0, 1\)"),
        ("data", "max_length", -1, "data.max_length=-1 must be >= 1"),
        ("data", "source", 7, "data.source=7 must be a string"),
    ],
)
def test_bad_value_is_named_with_its_field(section, field, value, expected):
    raw = _raw()
    raw[section][field] = value
    with pytest.raises(ConfigError, match=expected):
        FederationConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"enabled": "yes"}, "secure_aggregation.enabled='yes' must be true or false"),
        ({"max_weight": 0}, "secure_aggregation.max_weight=0 must be > 0"),
        ({"clipping_range": -8.0}, "secure_aggregation.clipping_range=-8.0 must be > 0"),
        ({"quantization_range": 2.5}, "secure_aggregation.quantization_range=2.5 must be an integer"),
        ({"num_shares": 1.5}, r"secure_aggregation.num_shares=1.5: as a share it must be in \(0, 1\]"),
        ({"num_shares": 2}, "secure_aggregation.num_shares=2 must be 1 .* or > 2"),
        ({"num_shares": 3, "reconstruction_threshold": 3}, "reconstruction_threshold=3 must be less than num_shares"),
    ],
)
def test_secure_aggregation_values_are_checked(settings, expected):
    with pytest.raises(ConfigError, match=expected):
        FederationConfig.from_dict(_raw(secure_aggregation=settings))


def test_top_level_and_party_values_are_checked():
    for key, value, expected in [
        ("seed", -1, "seed=-1 must be in"),
        ("seed", 2**40, "seed=1099511627776 must be in"),
        ("data_seed", "0", "data_seed='0' must be an integer or absent"),
        ("name", 5, "name=5 must be a string"),
        ("training", [1], r"training=\[1\] must be a table"),
        ("federation", 3, r"\[federation\] must be a table of settings, got 3"),
        ("parties", {"source": "x"}, "parties must be a list of tables"),
    ]:
        raw = _raw()
        raw[key] = value
        with pytest.raises(ConfigError, match=expected):
            FederationConfig.from_dict(raw)
    raw = _raw()
    raw["parties"][0] = {"source": 3}
    with pytest.raises(ConfigError, match="parties.0..source=3 must be a string"):
        FederationConfig.from_dict(raw)


def test_a_value_set_after_loading_is_checked_by_validate():
    config = FederationConfig.from_dict(_raw())
    config.federation.local_steps = 2.5
    with pytest.raises(ConfigError, match="federation.local_steps=2.5"):
        config.validate()


def test_numbers_of_the_declared_kind_pass_and_round_trip():
    """An int where a float is declared is a number (TOML writes ``round_timeout = 300``); JSON keeps it."""
    raw = _raw(round_timeout=300, dp_clipping_norm=2, trim_fraction=0.0, secure_aggregation={"num_shares": 0.5})
    config = FederationConfig.from_dict(raw)
    assert config.federation.round_timeout == 300
    assert FederationConfig.from_dict(json.loads(config.to_json())) == config
    check_values(config.secure_aggregation, "federation.secure_aggregation")
