"""Server-side screening of updates and the federation config, without running a federation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.federated.conftest import TINY_CONFIG, tiny_federation

pytest.importorskip("flwr")


@pytest.fixture(scope="module")
def reference(shared_data_dir):
    from fedgrow_hf.experiment.parties import reference_global_stage

    return reference_global_stage(tiny_federation(shared_data_dir))


def _record(state):
    from flwr.app import ArrayRecord

    return ArrayRecord(state)


def _limit(reference):
    from fedgrow_hf.federated.screening import payload_bytes

    return payload_bytes(_record(reference.state_dict()))


def update_problem(arrays, reference, max_bytes):
    """Why the server's screen rejects ``arrays`` as a Global-LiGO update (None if it accepts it)."""
    from fedgrow_hf.federated.screening import UpdateRejected, decode_state

    try:
        decode_state(arrays, reference.state_dict(), max_bytes)
    except UpdateRejected as error:
        return str(error)
    return None


def test_valid_update_passes(reference):
    state = {k: v + 0.01 for k, v in reference.state_dict().items()}
    assert update_problem(_record(state), reference, _limit(reference)) is None


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda s, k: {**s, "sources.0.word_embeddings": torch.zeros(3)}, "unexpected ['sources.0.word_embeddings']"),
        (lambda s, k: {n: v for n, v in s.items() if n != k}, "missing ["),
        (lambda s, k: {**s, k: torch.zeros(s[k].numel() + 1)}, "has shape"),
        (lambda s, k: {**s, k: s[k].double()}, "dtype"),
        (lambda s, k: {**s, k: torch.full_like(s[k], float("inf"))}, "non-finite"),
    ],
    ids=["foreign-key", "missing-key", "shape", "dtype", "non-finite"],
)
def test_bad_update_is_named(reference, corrupt, expected):
    state = reference.state_dict()
    key = sorted(state)[-1]
    problem = update_problem(_record(corrupt(state, key)), reference, 10 * _limit(reference))
    assert problem is not None and expected in problem
    if expected not in ("unexpected", "missing ["):
        assert key in problem or "keys" in problem


def test_size_bound_is_checked_before_deserialising(reference):
    from flwr.app import Array

    record = _record(reference.state_dict())
    key = next(iter(record.keys()))
    record[key] = Array(dtype="float32", shape=tuple(record[key].shape), stype="numpy.ndarray", data=b"x" * 10**6)
    problem = update_problem(record, reference, _limit(reference))
    assert problem is not None and "more than the bound" in problem


def test_dp_wrapper_is_built_only_when_configured(shared_data_dir):
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    from fedgrow_hf.federated.strategy import build_strategy

    assert type(build_strategy(tiny_federation(shared_data_dir))) is FedAvg
    dp = build_strategy(tiny_federation(shared_data_dir, dp_noise_multiplier=0.7, dp_clipping_norm=0.3))
    assert isinstance(dp, DifferentialPrivacyServerSideFixedClipping)
    assert (dp.noise_multiplier, dp.clipping_norm, dp.num_sampled_clients) == (0.7, 0.3, 3)


def test_config_errors_name_the_field(tmp_path):
    from fedgrow_hf.experiment.config import ConfigError, FederationConfig

    text = TINY_CONFIG.read_text()
    for bad, field in [
        (text.replace('phase2 = "local"', 'phase2 = "sideways"'), "phase2"),
        (text.replace("min_train_nodes = 2", "min_train_nodes = 7"), "min_train_nodes"),
        (text.replace("[training]", "[training]\n[typo]\nx = 1\n[more]"), "unknown top-level"),
        (text.replace("local_steps = 5", "local_step = 5"), "unknown keys in [federation]"),
        (text.replace("finetune_steps = 5", "finetune_steps = 5\nfinetune_learning_rate = -1e-4"),
         "finetune_learning_rate"),
    ]:
        path = tmp_path / "bad.toml"
        path.write_text(bad)
        with pytest.raises(ConfigError, match=field.replace("[", r"\[")):
            FederationConfig.load(path)


def test_json_and_toml_configs_agree(tmp_path):
    from fedgrow_hf.experiment.config import FederationConfig

    toml = FederationConfig.load(TINY_CONFIG)
    path = tmp_path / "tiny.json"
    path.write_text(toml.to_json())
    assert FederationConfig.load(path) == toml
    assert np.isclose(toml.data.alpha, 5.0)


def test_federated_package_imports_without_flower():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['flwr'] = None; sys.modules['ray'] = None\n"
        "import fedgrow_hf.federated as f; from fedgrow_hf.federated import checkpoint, trainer, run_config\n"
        "from fedgrow_hf.experiment import config, data, models, parties, training\n"
        "print(f.FedGrowTrainer.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "FedGrowTrainer"


def test_flower_run_config_overrides_the_main_settings_flat(shared_data_dir):
    """The example app's ``[tool.flwr.app.config]`` keys, flattened as Flower passes them, set the run."""
    import tomllib
    from flwr.common.config import flatten_dict

    from fedgrow_hf.experiment.config import ConfigError, FederationConfig
    from fedgrow_hf.federated.run_config import resolve_run

    app = TINY_CONFIG.parents[1] / "flower_app" / "pyproject.toml"
    run_config = flatten_dict(tomllib.loads(app.read_text())["tool"]["flwr"]["app"]["config"])
    assert {"federation.rounds", "federation.local-steps", "training.learning-rate"} <= set(run_config)
    run_config.update(config=str(TINY_CONFIG), **{"federation.local-steps": 7, "training.learning-rate": 0.05})
    config, run_dir = resolve_run(run_config, None, None)
    assert config.federation.local_steps == 7 and config.training["learning_rate"] == 0.05
    assert config.federation.rounds == run_config["federation.rounds"] and str(run_dir) == run_config["run-dir"]
    untouched = FederationConfig.load(TINY_CONFIG)
    assert config.parties == untouched.parties and config.model == untouched.model
    for bad, message in [({"federation.round": 3}, r"unknown keys in \[federation\]: \['round'\]"),
                         ({"federation.rounds": "3"}, "federation.rounds='3'"), ({"modell.family": "vit"}, "no table")]:
        with pytest.raises(ConfigError, match=message):
            resolve_run({"config": str(TINY_CONFIG), **bad}, None, None)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda t: t.replace("num_hidden_layers = 4,", "num_hidden_layerz = 4,"),
      r"unknown keys in \[model\].target: \['num_hidden_layerz'\]; did you mean 'num_hidden_layerz' -> 'num_hidden_layers'\?"),
     (lambda t: t.replace("learning_rate = 1e-2", 'learning_rate = "fast"'), "training.learning_rate='fast' must be a finite number"),
     (lambda t: t.replace("learning_rate = 1e-2", "learning_rat = 1e-2"), r"\['learning_rat'\]; did you mean 'learning_rat' -> 'learning_rate'"),
     (lambda t: t.replace("local_steps = 5", "local_step = 5"), r"did you mean 'local_step' -> 'local_steps'\?"),
     (lambda t: t + "[[parties]]\nrandom = {num_hidden_layers = 1, hiden_size = 16}\n", r"parties\[3\].random: \['hiden_size'\]"),
     (lambda t: t + "[[parties]]\nderive = {num_hidden_layers = 1, hidden_sise = 16}\n",
      r"parties\[3\].derive: \['hidden_sise'\]; did you mean 'hidden_sise' -> 'hidden_size'\?"),
     (lambda t: t + "[[parties]]\npretrain = {num_hidden_layers = 1, epoch = 2}\n",
      r"parties\[3\].pretrain: \['epoch'\]; did you mean 'epoch' -> 'epochs'\?"),
     (lambda t: t + "[[parties]]\nderive = 3\n", r"parties\[3\].derive=3 must be a table"),
     (lambda t: t.replace("[data]", "ligo = {init_noise_sd = 0.01}\n\n[data]"),
      r"\[model\].ligo: \['init_noise_sd'\]; did you mean 'init_noise_sd' -> 'init_noise_std'\?"),
     (lambda t: t + "deep = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
     (lambda t: t.replace('min_train_nodes = 2', 'min_train_nodes = 2\naggregator = "fedtrimmedavg"'),
      r"trim_fraction=0.2 with 3 parties trims int\(0.2 x 3\) = 0 values per side: fedtrimmedavg would be a plain mean; "
      r"trim_fraction >= 0.334 with 3 parties, or use aggregator = 'fedmedian'")],
    ids=["target-typo", "learning-rate-fast", "training-typo", "federation-typo", "party-shape-typo",
         "party-derive-typo", "party-pretrain-typo", "party-derive-not-a-table", "ligo-typo", "deep-nesting",
         "trimmed-mean-trims-nothing"],
)
def test_hostile_config_is_refused_in_one_line_before_anything_is_written(tmp_path, edit, message):
    from fedgrow_hf.experiment.config import ConfigError, FederationConfig

    path = tmp_path / "bad.toml"
    path.write_text(edit(TINY_CONFIG.read_text()))
    with pytest.raises(ConfigError, match=message) as refused:
        FederationConfig.load(path)
    assert "\n" not in str(refused.value) and sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_trimmed_mean_that_trims_one_per_side_is_accepted_with_a_warning_for_smaller_rounds(shared_data_dir, caplog):
    config = tiny_federation(shared_data_dir, aggregator="fedtrimmedavg", trim_fraction=0.34)
    assert int(config.federation.trim_fraction * config.num_parties) == 1
    assert "trims int(0.34 x 3) = 1 values per side with all 3 parties, but none in a round with only " \
           "min_train_nodes=2 valid replies" in caplog.text
