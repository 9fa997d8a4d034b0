"""``fedgrow reproduce``: the comparison harness on the ``tiny`` preset (real SST-2 sentences, random tiny
BERT sources) and its configuration logic.

The module-scoped run executes every method once through the real federation (Flower simulation
engine) and writes into a temporary folder; the checks then read what it measured and wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedgrow_hf.federated.config import ConfigError, FederationConfig
from fedgrow_hf.reproduce import METHODS, PRESETS, preset_config
from fedgrow_hf.reproduce.methods import method_config, same_source, scratch_rounds

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny(data_dir: Path = Path("data")) -> FederationConfig:
    return FederationConfig.from_dict(preset_config("tiny", data_dir))


@pytest.fixture(scope="module")
def tiny_run(shared_data_dir, tmp_path_factory):
    pytest.importorskip("flwr")
    pytest.importorskip("ray")
    from fedgrow_hf.reproduce import reproduce

    root = tmp_path_factory.mktemp("reproduce")
    results = reproduce(
        "tiny", data_dir=shared_data_dir, output_dir=root / "results" / "tiny", work_dir=root / "work",
        report_path=root / "RESULTS.md", command="fedgrow reproduce tiny", log=lambda message: None,
    )
    return {"results": results, "root": root, "config": _tiny(shared_data_dir)}


@pytest.mark.slow
def test_every_method_produces_all_figures(tiny_run):
    config, methods = tiny_run["config"], tiny_run["results"]["methods"]
    assert list(methods) == list(METHODS)
    points = config.federation.rounds + 1  # phase-1 rounds + phase 2 (Fed-Scratch: as many FedAvg rounds)
    for name, summary in methods.items():
        for metric in ("accuracy", "precision_macro"):
            figures = summary[metric]
            assert len(figures["per_party"]) == config.num_parties, (name, metric)
            assert all(0 <= value <= 1 for value in figures["per_party"]), (name, metric)
            assert figures["mean"] == pytest.approx(sum(figures["per_party"]) / config.num_parties)
            assert figures["std"] >= 0
        assert summary["trainable_parameters"]["phase1_mean"] > 0 and summary["trainable_parameters"]["phase2"] > 0
        assert summary["local_steps_per_party"] == 12, name  # 2 rounds x 4 steps + 4 phase-2 steps, for all
        assert summary["wall_seconds"] > 0
        curve = summary["curve"]
        assert len(curve) == points, name
        sent = [point["cumulative_bytes"] for point in curve]
        assert sent == sorted(sent) and sent[-1] == summary["bytes_total"], name
    assert methods["independent"]["bytes_total"] == 0 and methods["independent"]["shared_parameters"] == 0


@pytest.mark.slow
def test_bytes_are_what_each_method_exchanges(tiny_run):
    from fedgrow_hf.federated.strategy import payload_bytes, to_array_record
    from fedgrow_hf.federated.task import model_classes, reference_global_stage, target_config

    config, methods = tiny_run["config"], tiny_run["results"]["methods"]
    global_ligo = payload_bytes(to_array_record(reference_global_stage(config).state_dict()))
    _, model_class = model_classes(config)
    full_model = payload_bytes(to_array_record(model_class(target_config(config)).state_dict()))
    assert methods["fed-grow"]["bytes_up_per_party_round"] == global_ligo
    assert methods["operator-fedavg"]["bytes_up_per_party_round"] == global_ligo
    assert methods["fed-scratch"]["bytes_up_per_party_round"] == full_model
    assert methods["fed-scratch"]["communication_rounds"] == scratch_rounds(config) == 3
    reference = reference_global_stage(config).state_dict()
    assert methods["fed-grow"]["shared_parameters"] == sum(tensor.numel() for tensor in reference.values())
    headline = tiny_run["results"]["headline"]
    assert headline["bytes_total_vs_fed_scratch"] == pytest.approx(
        methods["fed-grow"]["bytes_total"] / methods["fed-scratch"]["bytes_total"]
    )
    assert headline["bytes_total_vs_fed_scratch"] < 0.05


@pytest.mark.slow
def test_results_json_records_config_seeds_versions_and_commit(tiny_run):
    saved = json.loads((tiny_run["root"] / "results" / "tiny" / "results.json").read_text())
    assert saved["preset"] == "tiny" and saved["command"] == "fedgrow reproduce tiny"
    assert FederationConfig.from_dict(saved["config"]).to_dict() == saved["config"]
    assert saved["seeds"]["seed"] == 0
    assert {"torch", "transformers", "peft", "flwr"} <= set(saved["environment"]["versions"])
    assert saved["environment"]["git_commit"]
    assert saved["methods"]["fed-grow"]["records"][0]["phase"] == "operator"


@pytest.mark.slow
def test_plots_and_report_are_written_and_regenerated(tiny_run):
    from fedgrow_hf.reproduce.methods import METHOD_LABELS
    from fedgrow_hf.reproduce.runner import rewrite_report

    results_dir, report = tiny_run["root"] / "results" / "tiny", tiny_run["root"] / "RESULTS.md"
    plots = [results_dir / "accuracy_vs_rounds.png", results_dir / "accuracy_vs_bytes.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC
    text = report.read_text()
    assert "## `tiny`" in text and "Command: `fedgrow reproduce tiny`" in text
    assert all(f"| {label} |" in text for label in METHOD_LABELS.values())
    assert "`vision-small`: not measured yet" in text  # presets without results name their command
    assert "Learning rates: operator 0.001, full model 0.001; batch size 8." in text
    majority = tiny_run["results"]["majority_class"]
    assert len(majority["per_party"]) == tiny_run["config"].num_parties and 0.5 <= majority["mean"] <= 1
    assert f"Majority-class reference (always predict the party's most frequent training label): accuracy " \
           f"{majority['mean']:.4f}" in text
    for path in [*plots, report]:
        path.unlink()
    rewrite_report(results_dir, report)
    assert report.read_text() == text and all(plot.is_file() for plot in plots)


@pytest.mark.slow
def test_report_only_backfills_the_majority_reference_of_older_results(tiny_run, tmp_path):
    """Results written before the majority-class reference existed get it from their recorded config."""
    from fedgrow_hf.reproduce.runner import rewrite_report

    results = json.loads(json.dumps(tiny_run["results"]))
    expected = results.pop("majority_class")
    older = tmp_path / "results" / "tiny"
    older.mkdir(parents=True)
    (older / "results.json").write_text(json.dumps(results))
    rewrite_report(older, tmp_path / "RESULTS.md")
    assert json.loads((older / "results.json").read_text())["majority_class"] == expected
    assert "Majority-class reference" in (tmp_path / "RESULTS.md").read_text()


def test_majority_reference_counts_the_training_majority_on_held_out_labels(shared_data_dir):
    from collections import Counter

    from fedgrow_hf.federated.task import party_shares
    from fedgrow_hf.reproduce.methods import majority_class_reference

    config = _tiny(shared_data_dir)
    reference = majority_class_reference(config)
    train, held_out = party_shares(config, 1)
    label = Counter(train["label"]).most_common(1)[0][0]
    assert reference["per_party"][1] == pytest.approx(held_out["label"].count(label) / len(held_out))
    assert reference["mean"] == pytest.approx(sum(reference["per_party"]) / config.num_parties)


@pytest.mark.slow
def test_resume_keeps_what_was_measured_with_the_same_config(tiny_run, shared_data_dir):
    from fedgrow_hf.reproduce import reproduce

    root, messages, kept = tiny_run["root"], [], ["fed-grow", "fed-scratch"]
    again = reproduce(
        "tiny", data_dir=shared_data_dir, output_dir=root / "resumed" / "tiny", work_dir=root / "work",
        report_path=root / "resumed.md", methods=kept, resume=True, log=messages.append,
    )
    measured = json.loads(json.dumps(tiny_run["results"]["methods"]))
    assert again["methods"] == {name: measured[name] for name in kept}
    first = tiny_run["results"]["headline"]
    assert again["headline"] == pytest.approx({key: first[key] for key in first if key != "accuracy_delta_vs_independent"})
    assert sum("measured before (same config)" in message for message in messages) == len(kept)
    report = (root / "resumed.md").read_text()
    assert "Not run for this preset (no figures): Independent growth, FedAvg of whole operator" in report


def test_presets_are_valid_federation_configs():
    for name in PRESETS:
        config = FederationConfig.from_dict(preset_config(name, "/data"))
        assert config.name == name and config.num_parties >= 2
        assert config.data.source.startswith("/data/")  # the data location is the caller's


def test_unknown_preset_is_a_clear_error(tmp_path):
    from fedgrow_hf.cli import main

    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        preset_config("nope", tmp_path)
    assert main(["reproduce", "nope", "--output-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path)]) == 1
    assert not (tmp_path / "out").exists()


def test_method_configs_share_everything_but_the_method(tmp_path):
    base = _tiny()
    scratch = method_config(base, "fed-scratch", tmp_path)
    fed = scratch.federation
    assert (fed.rounds, fed.phase2, fed.finetune_init) == (0, "federated", "random")
    assert fed.finetune_rounds * fed.finetune_steps == base.federation.rounds * base.federation.local_steps + (
        base.federation.finetune_steps
    )
    grow = method_config(base, "fed-grow", tmp_path)
    for config in (scratch, grow):
        assert config.training == base.training and config.data.limit == base.data.limit
        assert config.parties == base.parties and config.seed == base.seed
    with pytest.raises(ValueError, match="unknown method"):
        method_config(base, "fedprox", tmp_path)


def test_same_source_reference_needs_the_intermediate_shape(tmp_path):
    base = _tiny()
    reference = method_config(base, "operator-fedavg", tmp_path)
    assert len({party.source for party in reference.parties}) == 1 and reference.model.ligo["train_local"] is False
    with pytest.raises(ValueError, match="intermediate shape"):
        same_source(base, tmp_path / "other", reference_party=1)  # party 1 is L1/H16, not L2/H32


def test_fed_scratch_settings_are_validated():
    raw = preset_config("tiny", "/data")
    raw["federation"].update(finetune_init="random", phase2="local")
    with pytest.raises(ConfigError, match="finetune_init='random'"):
        FederationConfig.from_dict(raw)
    raw["federation"].update(finetune_init="grown", phase2="federated", rounds=0)
    with pytest.raises(ConfigError, match="rounds must be >= 1"):
        FederationConfig.from_dict(raw)


def test_report_learning_rates_follow_the_training_defaults():
    """A user's config without ``[training].learning_rate`` reports the rate its parties really used."""
    from fedgrow_hf.federated.task import training_arguments
    from fedgrow_hf.reproduce.report import _learning_rates

    config = _tiny()
    config.training = {}
    default = training_arguments(config, "unused", 1)
    assert _learning_rates(config.to_dict()) == (
        f"Learning rates: operator {default.learning_rate:g}, full model {default.learning_rate:g}; "
        f"batch size {default.per_device_train_batch_size}."
    )
    config.federation.finetune_learning_rate = 2e-5
    assert "full model 2e-05" in _learning_rates(config.to_dict())
