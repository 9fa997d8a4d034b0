"""``fedgrow reproduce``: the comparison harness on the ``tiny`` preset (real SST-2 sentences, random tiny
BERT sources, two seeds) and its configuration, statistics and report logic.

The module-scoped run tunes the full-model learning rate, executes every method with both seeds through
the real federation (Flower's apps on the in-process engine, which ``tests/federated/test_inprocess.py`` holds
to Flower's simulation engine) or ``transformers.Trainer``, two runs at a time (``jobs=2``), keeps every party's
final model and writes into a temporary folder; the checks then read what it measured and wrote.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fedgrow_hf.architectures import get_architecture_table
from fedgrow_hf.experiment.config import ConfigError, FederationConfig
from fedgrow_hf.experiment.data import party_shares
from fedgrow_hf.federated.engine import SimulationEngine
from fedgrow_hf.reproduce import METHODS, PRESETS, preset_config
from fedgrow_hf.reproduce.methods import (
    SHAPE_KEYS,
    earlier_sittings,
    method_config,
    same_source,
    scratch_rounds,
)
from fedgrow_hf.reproduce.results_markdown import preset_section
from fedgrow_hf.reproduce.stats import aggregation_effect, compute_seconds
from fedgrow_hf.reproduce.tuning import LEARNING_RATE_GRID
from fedgrow_hf.tuners.ligo import GrowthStage, ModelShape
from fedgrow_hf.tuners.ligo.shapes import OPTIONAL_SHAPE_FIELDS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny(data_dir: Path = Path("data")) -> FederationConfig:
    return FederationConfig.from_dict(preset_config("tiny", data_dir))


@pytest.fixture(scope="module")
def tiny_run(shared_data_dir, tmp_path_factory):
    pytest.importorskip("flwr")
    from fedgrow_hf.reproduce import reproduce

    root = tmp_path_factory.mktemp("reproduce")
    results = reproduce(
        "tiny", data_dir=shared_data_dir, output_dir=root / "results" / "tiny", work_dir=root / "work",
        report_path=root / "RESULTS.md", command="fedgrow reproduce tiny --tune", tune=True, keep_models=True,
        engine="inprocess", jobs=2, log=lambda message: None,
    )
    return {"results": results, "root": root, "config": _tiny(shared_data_dir)}


def _sample_std(values: list[float]) -> float:
    return float(np.std(values, ddof=1))


@pytest.mark.slow
def test_every_method_produces_all_figures_for_every_seed(tiny_run):
    config, results = tiny_run["config"], tiny_run["results"]
    methods, seeds = results["methods"], results["seeds"]
    assert list(methods) == list(METHODS) and seeds == [0, 1]
    for name, summary in methods.items():
        for metric in ("test_accuracy", "test_f1_macro", "accuracy", "precision_macro"):
            figures = summary[metric]
            values = np.asarray(figures["values"])
            assert values.shape == (len(seeds), config.num_parties), (name, metric)
            assert ((0 <= values) & (values <= 1)).all(), (name, metric)
            assert figures["per_seed"] == pytest.approx(values.mean(axis=1).tolist())
            assert figures["mean"] == pytest.approx(np.mean(figures["per_seed"]))
            assert figures["std"] == pytest.approx(_sample_std(figures["per_seed"]))
            assert figures["per_party"] == pytest.approx(values.mean(axis=0).tolist())
            assert figures["party_std"] == pytest.approx(values.std(axis=1).mean())
        assert summary["trainable_parameters"]["phase1_mean"] > 0 and summary["trainable_parameters"]["phase2"] > 0
        assert summary["local_steps_per_party"] == 16, name  # 2 rounds x 4 steps + 8 phase-2 steps, for all
        assert [run["seed"] for run in summary["runs"]] == seeds
        assert all(run["wall_seconds"] > 0 for run in summary["runs"])
        # one evaluation per round's worth of steps (4), local phase 2 included, averaged over seeds
        assert [point["steps"] for point in summary["curve"]] == [4, 8, 12, 16], name
        final_held_out = [run["curve"][-1]["accuracy"] for run in summary["runs"]]
        assert summary["curve"][-1]["accuracy"] == pytest.approx(np.mean(final_held_out))
        sent = [point["cumulative_bytes"] for point in summary["curve"]]
        assert sent == sorted(sent) and sent[-1] == summary["bytes_total"], name
    for name in ("fed-grow", "independent", "operator-fedavg", "central-ligo"):  # local phase 2 has its curve
        assert [point["phase"] for point in methods[name]["curve"]][2:] == ["finetune-local"] * 2, name
    for name in ("independent", "own-source", "central-ligo"):
        assert methods[name]["bytes_total"] == 0 and methods[name]["shared_parameters"] == 0
    central = np.asarray(methods["central-ligo"]["test_accuracy"]["values"])
    assert (central == central[:, :1]).all()  # one model serves every party


@pytest.mark.slow
def test_test_accuracy_is_what_each_kept_final_model_scores_on_the_test_file(tiny_run, shared_data_dir,
                                                                               minilm_path):
    """Recompute Fed-Grow's and own-source's common-test accuracy from the kept models, independently of
    the harness: the test file read with the csv module, tokenised by hand, one forward pass."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    with open(shared_data_dir / "sst2" / "test.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    labels = torch.tensor([int(row["label"]) for row in rows])
    batch = AutoTokenizer.from_pretrained(minilm_path)(
        [row["sentence"] for row in rows], truncation=True, max_length=tiny_run["config"].data.max_length,
        padding="max_length", return_tensors="pt",
    )
    methods, work = tiny_run["results"]["methods"], tiny_run["root"] / "work"
    for method, seed, party in (("fed-grow", 1, 1), ("own-source", 0, 0), ("fed-scratch", 1, 0)):
        model = BertForSequenceClassification.from_pretrained(work / f"seed-{seed}" / method / "parties" /
                                                              f"party-{party}" / "grown").eval()
        with torch.no_grad():
            accuracy = (model(**batch).logits.argmax(-1) == labels).float().mean().item()
        assert methods[method]["test_accuracy"]["values"][seed][party] == pytest.approx(accuracy, abs=1e-6), method
    own = BertForSequenceClassification.from_pretrained(work / "seed-0/own-source/parties/party-1/grown")
    shape = tiny_run["config"].parties[1].random
    assert (own.config.num_hidden_layers, own.config.hidden_size) == (shape["num_hidden_layers"], shape["hidden_size"])


@pytest.mark.slow
def test_paired_differences_and_targets_follow_from_the_per_seed_figures(tiny_run):
    results = tiny_run["results"]
    methods, differences = results["methods"], results["paired_differences"]
    ours = methods["fed-grow"]["test_accuracy"]["per_seed"]
    assert set(differences) == set(METHODS) - {"fed-grow"}
    for name, difference in differences.items():
        expected = [a - b for a, b in zip(ours, methods[name]["test_accuracy"]["per_seed"])]
        assert difference["per_seed"] == pytest.approx(expected)
        assert difference["mean"] == pytest.approx(np.mean(expected))
        assert difference["std"] == pytest.approx(_sample_std(expected))
        assert difference["better_on"] == sum(value > 0 for value in expected)
    targets = {target["key"]: target for target in results["targets"]}
    assert set(targets) == {"test-accuracy-vs-own-source", "test-accuracy-vs-independent",
                            "party-spread-vs-independent", "steps-to-fed-scratch"}
    own = methods["own-source"]["test_accuracy"]["mean"]
    assert targets["test-accuracy-vs-own-source"]["met"] is (methods["fed-grow"]["test_accuracy"]["mean"] >= own)
    spread = methods["fed-grow"]["test_accuracy"]["party_std"] <= methods["independent"]["test_accuracy"]["party_std"]
    assert targets["party-spread-vs-independent"]["met"] is spread
    goal = methods["fed-scratch"]["curve"][-1]["accuracy"]
    reached = [p["steps"] for p in methods["fed-grow"]["curve"] if p["accuracy"] >= goal]
    assert targets["steps-to-fed-scratch"]["met"] is bool(reached and reached[0] / 16 <= 0.4)


@pytest.mark.slow
def test_bytes_are_what_each_method_exchanges(tiny_run):
    from flwr.app import ArrayRecord

    from fedgrow_hf.experiment.models import model_classes, target_config
    from fedgrow_hf.experiment.parties import reference_global_stage
    from fedgrow_hf.federated.screening import payload_bytes

    config, methods = tiny_run["config"], tiny_run["results"]["methods"]
    global_ligo = payload_bytes(ArrayRecord(reference_global_stage(config).state_dict()))
    _, model_class = model_classes(config)
    full_model = payload_bytes(ArrayRecord(model_class(target_config(config)).state_dict()))
    assert methods["fed-grow"]["bytes_up_per_party_round"] == global_ligo
    assert methods["operator-fedavg"]["bytes_up_per_party_round"] == global_ligo
    assert methods["fed-scratch"]["bytes_up_per_party_round"] == full_model
    assert methods["fed-scratch"]["communication_rounds"] == scratch_rounds(config) == 4
    # every round's model up, and down from round 2 on: round 1's start is built from the shared seed, not sent
    assert methods["fed-scratch"]["bytes_total"] == config.num_parties * full_model * (2 * scratch_rounds(config) - 1)
    reference = reference_global_stage(config).state_dict()
    assert methods["fed-grow"]["shared_parameters"] == sum(tensor.numel() for tensor in reference.values())
    headline = tiny_run["results"]["headline"]
    assert headline["bytes_total_vs_fed_scratch"] == pytest.approx(
        methods["fed-grow"]["bytes_total"] / methods["fed-scratch"]["bytes_total"]
    )
    assert headline["bytes_total_vs_fed_scratch"] < 0.05


@pytest.mark.slow
def test_results_json_records_config_seeds_tuning_data_versions_and_commit(tiny_run):
    saved = json.loads((tiny_run["root"] / "results" / "tiny" / "results.json").read_text())
    assert saved["preset"] == "tiny" and saved["command"] == "fedgrow reproduce tiny --tune"
    assert FederationConfig.from_dict(saved["config"]).to_dict() == saved["config"]
    assert saved["seeds"] == [0, 1] and saved["config"]["data_seed"] == 0
    tuning = saved["learning_rate_tuning"]
    assert tuning["grid"] == list(LEARNING_RATE_GRID) and set(LEARNING_RATE_GRID) <= set(tuning["tried"])
    for search in (tuning, tuning["own_source"]):  # the target's rate (independent growth), the sources'
        assert search["chosen"] in search["tried"] and list(search["dev_accuracy"]) == list(map(repr, search["tried"]))
        assert search["dev_accuracy"][repr(search["chosen"])] == max(search["dev_accuracy"].values())
    assert tuning["procedure"].startswith("independent growth")
    assert tuning["own_source"]["procedure"].startswith("own-source fine-tuning")
    assert saved["config"]["federation"]["finetune_learning_rate"] == tuning["chosen"]  # the target's
    trained_at = {method: json.loads((tiny_run["root"] / "work" / "seed-0" / f"{method}.json").read_text())
                  ["config"]["federation"]["finetune_learning_rate"] for method in METHODS}
    assert trained_at == {method: tuning["own_source"]["chosen"] if method == "own-source" else tuning["chosen"]
                          for method in METHODS}
    config = tiny_run["config"]
    assert [party["train"] + party["held_out"] for party in saved["party_data"]] == [
        sum(len(share) for share in party_shares(config, party)) for party in range(config.num_parties)
    ]
    assert saved["test_examples"] == 872
    assert {"torch", "transformers", "peft", "flwr"} <= set(saved["environment"]["versions"])
    assert saved["environment"]["git_commit"]
    assert saved["methods"]["fed-grow"]["runs"][0]["records"][0]["phase"] == "operator"


@pytest.mark.slow
def test_plots_and_report_are_written_and_regenerated(tiny_run):
    from fedgrow_hf.reproduce.methods import METHOD_LABELS
    from fedgrow_hf.reproduce.runner import rewrite_report

    results_dir, report = tiny_run["root"] / "results" / "tiny", tiny_run["root"] / "RESULTS.md"
    plots = [results_dir / "accuracy_vs_steps.png", results_dir / "accuracy_vs_bytes.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC
    text = report.read_text()
    results = tiny_run["results"]
    assert "## `tiny`" in text and "Command: `fedgrow reproduce tiny --tune`" in text
    assert all(f"| {METHOD_LABELS[name]} |" in text for name in results["methods"])
    own = results["methods"]["own-source"]["test_accuracy"]
    assert f"| Own source, fine-tuned | {own['mean']:.4f} ± {own['std']:.4f} |" in text
    assert "### Fed-Grow minus each method, paired by seed" in text
    assert "### Common-test accuracy per party (mean over seeds)" in text
    effect = aggregation_effect(results["methods"]["fed-grow"])  # phase 1 is a federation: measured
    assert f"| Fed-Grow | {effect['by_average']:.4f} | {effect['by_local_training']:.4f} |" in text
    assert "| Own source, fine-tuned | " + " | ".join(f"{value:.4f}" for value in own["per_party"]) + " |" in text
    assert "### Targets of the issue" in text
    assert all(target["target"] in text for target in results["targets"])
    assert "`vision-small`: not measured yet" in text  # presets without results name their command
    tuning = results["learning_rate_tuning"]
    chosen, own = tuning["chosen"], tuning["own_source"]["chosen"]
    own_rate = f" (own-source {own:g})" if own != chosen else ""
    assert f"Learning rates: operator 0.001, full model {chosen:g}{own_rate}; batch size 8." in text
    assert f"Full-model learning rates tuned (`--tune`, seed 0): the target's {chosen:g} chosen by" in text
    assert f"Own-source's {own:g} chosen by own-source fine-tuning" in text
    majority = results["majority_class"]
    assert len(majority["held_out"]["per_party"]) == tiny_run["config"].num_parties
    assert 0.5 <= majority["held_out"]["mean"] <= 1
    assert f"held-out accuracy {majority['held_out']['mean']:.4f}" in text
    for path in [*plots, report]:
        path.unlink()
    rewrite_report(results_dir, report)
    assert report.read_text() == text and all(plot.is_file() for plot in plots)


@pytest.mark.slow
def test_a_run_side_by_side_scores_what_it_scores_alone(tiny_run):
    """``jobs=2`` ran each run in a worker on one thread: the same run here, alone on one thread, gives the same
    figures, so ``--jobs`` changes how long a comparison takes, not what it measures."""
    import torch

    from fedgrow_hf.experiment.data import common_test_set
    from fedgrow_hf.reproduce.methods import run_method
    from fedgrow_hf.reproduce.stats import seed_summary

    work = tiny_run["root"] / "work"
    kept = json.loads((work / "seed-1" / "fed-grow.json").read_text())
    config = FederationConfig.from_dict(kept["config"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = run_method(config, "fed-grow", work / "alone", common_test_set(config), engine="inprocess")
    finally:
        torch.set_num_threads(threads)
    figures = ("test_accuracy", "test_precision_macro", "accuracy", "trainable_parameters", "bytes_total")
    assert {key: seed_summary(alone)[key] for key in figures} == {key: kept["summary"][key] for key in figures}


@pytest.mark.slow
def test_report_warns_when_the_tuned_rate_is_the_edge_of_what_was_tried(tiny_run):
    results = copy.deepcopy(tiny_run["results"])
    tuning = results["learning_rate_tuning"]
    for search in (tuning, tuning["own_source"]):
        search["dev_accuracy"] = {"0.0001": 0.7, "0.0003": 0.8, "0.001": 0.9}
    caveat = "The chosen rate is the largest one tried, where the search ends"
    for target, own, warnings in ((3e-4, 3e-4, 0), (1e-3, 3e-4, 1), (3e-4, 1e-3, 1), (1e-3, 1e-3, 2)):
        tuning["chosen"], tuning["own_source"]["chosen"] = target, own
        assert preset_section(results, "results/tiny").count(caveat) == warnings


@pytest.mark.slow
def test_resume_keeps_what_was_measured_with_the_same_config(tiny_run, shared_data_dir):
    from fedgrow_hf.reproduce import reproduce

    root, messages, kept = tiny_run["root"], [], ["fed-grow", "fed-scratch"]
    # runs kept before a setting existed (here: share_head) ran with its default, so they are the same config
    older = 0
    for path in (root / "work").rglob("*.json"):
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and "summary" in saved:
            del saved["config"]["federation"]["share_head"]
            path.write_text(json.dumps(saved))
            older += 1
    assert older >= len(kept)
    # only the kept summaries, copied to another work folder (a clone on another machine): still the same runs
    moved = root / "moved"
    for path in (root / "work").rglob("*.json"):
        if path.parent.name.startswith("seed-") or path.name.startswith("tuning-"):
            (moved / path.relative_to(root / "work")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, moved / path.relative_to(root / "work"))
    again = reproduce(
        "tiny", data_dir=shared_data_dir, output_dir=root / "resumed" / "tiny", work_dir=moved,
        report_path=root / "resumed.md", methods=kept, tune=True, resume=True, log=messages.append,
    )
    measured = json.loads(json.dumps(tiny_run["results"]["methods"]))
    assert again["methods"] == {name: measured[name] for name in kept}
    assert again["headline"] == pytest.approx(tiny_run["results"]["headline"])
    assert sum("measured before (same config)" in message for message in messages) == len(kept) * 2 + 1  # + tuning
    assert not any("running" in message for message in messages)  # the sources' rate is not searched
    tuning = tiny_run["results"]["learning_rate_tuning"]
    assert again["learning_rate_tuning"] == {**tuning, "own_source": None}
    report = (root / "resumed.md").read_text()
    assert "Not run for this preset (no figures): Independent growth, FedAvg of whole operator" in report
    assert "Fed-Grow's mean common-test accuracy >= Own source, fine-tuned's: not measured" in report
    assert "Own-source's not searched (own-source was not run)." in report


@pytest.mark.slow
def test_own_source_alone_searches_only_the_sources_rate(tiny_run, shared_data_dir):
    from fedgrow_hf.reproduce import reproduce

    root, messages = tiny_run["root"], []
    alone = reproduce(
        "tiny", data_dir=shared_data_dir, output_dir=root / "own-alone" / "tiny", work_dir=root / "work",
        report_path=root / "own-alone.md", methods=["own-source"], tune=True, resume=True, log=messages.append,
    )
    assert not any("running" in message for message in messages)  # the target's search is not needed
    tuning = tiny_run["results"]["learning_rate_tuning"]
    assert alone["learning_rate_tuning"] == {"seed": tuning["seed"], "own_source": tuning["own_source"]}
    assert alone["methods"]["own-source"]["test_accuracy"] == tiny_run["results"]["methods"]["own-source"]["test_accuracy"]
    report = (root / "own-alone.md").read_text()
    assert "the target's not searched (no method that trains the target's shape was run);" in report
    assert f"Own-source's {tuning['own_source']['chosen']:g} chosen by own-source fine-tuning" in report


def test_majority_reference_counts_the_training_majority_on_held_out_and_test_labels(shared_data_dir):
    from collections import Counter

    from fedgrow_hf.reproduce.methods import majority_class_reference

    config = _tiny(shared_data_dir)
    test_labels = [0, 1, 1, 1]
    reference = majority_class_reference(config, test_labels)
    train, held_out = party_shares(config, 1)
    label = Counter(train["label"]).most_common(1)[0][0]
    assert reference["held_out"]["per_party"][1] == pytest.approx(held_out["label"].count(label) / len(held_out))
    assert reference["held_out"]["mean"] == pytest.approx(np.mean(reference["held_out"]["per_party"]))
    assert reference["test"]["per_party"][1] == test_labels.count(label) / len(test_labels)


def test_a_resumed_run_adds_the_times_itsearlier_sittings_recorded():
    """A federation resumed after round 2 adds its operator rounds 1-2's recorded wall and CPU seconds (not round
    3's, which the resumed sitting ran, nor phase 2's); rounds recorded before rounds kept their CPU time add
    wall time only, and the note says the CPU time is the last sitting's."""
    records = [{"phase": "operator", "round": 1, "seconds": 10.0, "cpu_seconds": 18.0},
               {"phase": "operator", "round": 2, "seconds": 11.0, "cpu_seconds": 20.0},
               {"phase": "operator", "round": 3, "seconds": 12.0, "cpu_seconds": 5.0},
               {"phase": "finetune-merge", "round": 1, "seconds": 3.0}]
    wall, cpu, note = earlier_sittings(records, 2)
    assert (wall, cpu) == (21.0, 38.0) and "21 s and 38 CPU s" in note
    older = [{key: value for key, value in record.items() if key != "cpu_seconds"} for record in records]
    wall, cpu, note = earlier_sittings(older, 2)
    assert (wall, cpu) == (21.0, 0.0) and "its CPU time is the resumed sitting's only" in note


def test_the_compute_behind_a_comparison_sums_its_runs_and_searches_over_every_sitting():
    """A resumed comparison that keeps every run takes seconds; the figures' cost is the sum of the runs' and
    the searches' recorded times. A run or search score kept from before times were recorded is counted as
    untimed, not as zero hours."""
    methods = {"fed-grow": {"runs": [{"wall_seconds": 100.0, "cpu_seconds": 90.0},
                                     {"wall_seconds": 110.0, "cpu_seconds": None}]},
               "own-source": {"runs": [{"wall_seconds": 50.0, "cpu_seconds": 45.0}]}}
    operator = {"chosen": 1e-2, "tried": [1e-3, 1e-2], "wall_seconds": 30.0, "cpu_seconds": 20.0, "untimed_scores": 4,
                "dev_accuracy_per_party": {"0.001": [0.5] * 4, "0.01": [0.6] * 4}}
    older = {"chosen": 1e-4, "tried": [1e-4, 3e-4], "dev_accuracy_per_party": {"0.0001": [0.5] * 3, "0.0003": [0.6] * 3}}
    tuning = {"seed": 0, **older, "own_source": None, "operator": operator}
    assert compute_seconds(methods, tuning) == {"wall": 290.0, "cpu": 155.0, "untimed": 1 + 4 + 6}
    assert compute_seconds(methods, None) == {"wall": 260.0, "cpu": 135.0, "untimed": 1}


def test_seeds_change_initialisation_not_the_data(shared_data_dir):
    """A comparison seed sets ``seed``; ``data_seed`` (partition, held-out shares, sources) stays."""
    from fedgrow_hf.experiment.parties import load_source

    config = _tiny(shared_data_dir)
    other = copy.deepcopy(config)
    other.seed = 1
    for party in range(config.num_parties):
        assert [share["text"] for share in party_shares(config, party)] == [
            share["text"] for share in party_shares(other, party)
        ]
    assert all(np.allclose(a.detach(), b.detach()) for a, b in zip(load_source(config, 1).parameters(),
                                                                    load_source(other, 1).parameters()))
    assert FederationConfig.from_dict({**preset_config("tiny", "/data"), "seed": 5, "data_seed": None}).data_seed == 5


def test_common_test_split_is_unseen_and_whole(shared_data_dir, tmp_path):
    from fedgrow_hf.experiment.data import common_test_set

    config = _tiny(shared_data_dir)
    assert len(common_test_set(config)) == 872  # SST-2 test.tsv, not limited like the training split
    config.data.test_split = "train"
    with pytest.raises(ValueError, match="must be unseen"):
        common_test_set(config)
    config.data.test_split, config.data.source = "test", str(shared_data_dir / "sst2" / "dev.tsv")
    with pytest.raises(ValueError, match="single file"):
        common_test_set(config)


def test_own_source_model_is_the_pretrained_encoder_under_a_fresh_head(tmp_path):
    """A ViT source pretrained on scikit-learn's digits keeps its encoder; its pretraining head is replaced."""
    import torch

    from fedgrow_hf.experiment.parties import load_source
    from fedgrow_hf.reproduce.methods import own_source_model

    raw = preset_config("vision-small", tmp_path)
    raw["parties"] = [{"pretrain": {**party["pretrain"], "steps": 2}} for party in raw["parties"][:2]]
    raw["data"].update(source="sklearn-digits", min_size=10, source_cache=str(tmp_path / "sources"))
    config = FederationConfig.from_dict(raw)
    source = load_source(config, 1)
    model = own_source_model(config, 1)
    assert model.config.hidden_size == source.config.hidden_size == 64 and model.config.hidden_dropout_prob == 0
    assert all(torch.equal(a, b) for a, b in zip(model.vit.state_dict().values(), source.vit.state_dict().values()))
    assert model.classifier.out_features == config.model.num_labels
    assert not torch.equal(model.classifier.weight, source.classifier.weight)


def _lossless_stage(table, source: dict[str, int], target: dict[str, int]) -> bool:
    """The operator's own verdict on one growth stage: no obstacle to an exact start."""
    stage = GrowthStage(table, ModelShape.from_config(source, table), ModelShape.from_config(target, table))
    return not stage.lossless_obstacles()


def _source_shape(party) -> dict[str, int]:
    """A preset party's source shape, without building it (derived BERTs keep MiniLM's 32-dim heads and
    FFN ratio 4; MiniLM itself is L6/H384/12 heads/FFN 1536)."""
    if party.source == "minilm":
        return {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
    if party.derive is not None:
        hidden = party.derive["hidden_size"]
        return {"num_hidden_layers": party.derive["num_hidden_layers"], "hidden_size": hidden,
                "num_attention_heads": hidden // 32, "intermediate_size": 4 * hidden}
    table = party.random or party.pretrain  # with a decoder's key/value heads where it names them
    return {key: table[key] for key in (*SHAPE_KEYS, *OPTIONAL_SHAPE_FIELDS) if key in table}


def _assert_lossless(config: FederationConfig, name: str) -> None:
    table = get_architecture_table(config.model.family)
    intermediate, target = config.model.intermediate, config.model.target
    assert _lossless_stage(table, intermediate, target), name
    for index, party in enumerate(config.parties):
        shape = _source_shape(party)
        assert _lossless_stage(table, shape, intermediate), (name, index)  # Dual-LiGO's Local stage
        assert _lossless_stage(table, shape, target), (name, index)  # plain LiGO: independent, central


def test_every_preset_grows_losslessly_from_every_source():
    """The LiGO-regime presets; the paper's presets keep the authors' shapes (256 -> 320 -> 384), which no
    LayerNorm growth keeps exact (test_paper_presets_keep_the_authors_shapes)."""
    for name in (name for name, preset in PRESETS.items() if preset.settings.partitions is None):
        config = FederationConfig.from_dict(preset_config(name, "/data"))
        _assert_lossless(config, name)
        intermediate = config.model.intermediate
        assert _source_shape(config.parties[0]) == {key: intermediate[key] for key in SHAPE_KEYS}  # reference


@pytest.mark.parametrize("name", ["paper-agnews", "paper-agnews-full"])
def test_paper_presets_keep_the_authors_shapes(name):
    config = FederationConfig.from_dict(preset_config(name, "/data"))
    shape = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
    assert [config.model.target[key] for key in shape] == [6, 384, 8, 384]
    assert [config.model.intermediate[key] for key in shape] == [4, 320, 8, 320]
    depths = [party.pretrain["num_hidden_layers"] for party in config.parties]
    assert config.num_parties == 10 and sorted(set(depths)) == [2, 3, 4]
    assert all(party.pretrain["hidden_size"] == 256 and party.pretrain["epochs"] == 10 for party in config.parties)
    assert config.federation.phase2 == "merge" and PRESETS[name].settings.partitions == {
        "dirichlet-0.5": {"partition": "dirichlet", "alpha": 0.5}, "iid": {"partition": "iid"}}
    assert len(PRESETS[name].settings.seeds) >= 3


@pytest.mark.parametrize("path", sorted(path for path in (Path(__file__).parents[1] / "examples" / "configs").glob("*.toml")
                                         if not path.is_symlink()))  # a link is a file's earlier name
def test_every_shipped_config_grows_losslessly(path):
    _assert_lossless(FederationConfig.load(path), path.name)


@pytest.mark.parametrize("name", ["text-small", "vision-small"])
def test_small_presets_give_every_party_at_least_1000_training_examples(name, shared_data_dir):
    from fedgrow_hf.reproduce.methods import party_data

    config = FederationConfig.from_dict(preset_config(name, shared_data_dir))
    assert min(party["train"] for party in party_data(config)) >= 1000
    assert PRESETS[name].settings.seeds == (0, 1, 2)


def test_presets_are_valid_federation_configs():
    for name in PRESETS:
        config = FederationConfig.from_dict(preset_config(name, "/data"))
        assert config.name == name and config.num_parties >= 2
        assert config.data.source.startswith("/data/")  # the data location is the caller's
        assert len(PRESETS[name].settings.seeds) >= 2 and PRESETS[name].settings.learning_rate_origin
    gpu_small = PRESETS["gpu-small"].settings
    assert "not run on CPU" in gpu_small.budget and "--engine inprocess" in gpu_small.budget


def test_unknown_preset_and_bad_seeds_are_clear_errors(tmp_path, capsys):
    from fedgrow_hf.cli import main

    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        preset_config("nope", tmp_path)
    assert main(["reproduce", "nope", "--output-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path)]) == 1
    assert not (tmp_path / "out").exists()
    for seeds in ("0,x", "1,1"):
        with pytest.raises(SystemExit):
            main(["reproduce", "tiny", "--seeds", seeds])
        assert "--seeds" in capsys.readouterr().err
    capsys.readouterr()
    for preset, problem in (("paper-agnews", "unknown partitions ['dirichlet']: this preset has dirichlet-0.5, iid"),
                            ("tiny", "this preset has no partitions")):
        assert main(["reproduce", preset, "--partitions", "dirichlet", "--work-dir", str(tmp_path / "work")]) == 1
        assert problem in capsys.readouterr().err
    for jobs, problem in ((["--jobs", "0"], "jobs must be at least 1, got 0"),
                          (["--jobs", "2"], "2 jobs run federations side by side on the in-process engine")):
        assert main(["reproduce", "tiny", *jobs, "--work-dir", str(tmp_path / "work")]) == 1
        assert problem in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # refused before the run folder and its log


def test_command_records_the_new_options():
    import argparse

    from fedgrow_hf.cli import reproduce as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["tiny", "--seeds", "0,1,2", "--tune", "--keep-models"])
    assert args.seeds == [0, 1, 2]
    assert cli._command(args) == ("fedgrow reproduce tiny --data-dir ../shared/data --seeds 0,1,2 --tune "
                                  "--keep-models")
    args = parser.parse_args(["paper-agnews", "--partitions", "iid"])
    assert cli._command(args) == "fedgrow reproduce paper-agnews --data-dir ../shared/data --partitions iid"
    engine_flags = ["--engine", "ray", "--cpus-per-party", "2", "--gpus-per-party", "0.5"]
    args = parser.parse_args(["tiny", *engine_flags])
    assert cli._command(args) == "fedgrow reproduce tiny --data-dir ../shared/data --cpus-per-party 2 --gpus-per-party 0.5"
    assert cli.engine_from_args(args) == SimulationEngine("ray", cpus_per_party=2.0, gpus_per_party=0.5)


def test_method_configs_share_everything_but_the_method(tmp_path):
    base = _tiny()
    scratch = method_config(base, "fed-scratch", tmp_path)
    fed = scratch.federation
    assert (fed.rounds, fed.phase2, fed.finetune_init) == (0, "federated", "random")
    assert fed.finetune_rounds * fed.finetune_steps == base.federation.rounds * base.federation.local_steps + (
        base.federation.finetune_steps
    )
    for method in ("fed-grow", "own-source", "central-ligo", "independent"):
        config = method_config(base, method, tmp_path)
        assert config.training == base.training and config.data.limit == base.data.limit
        assert config.parties == base.parties and config.seed == base.seed
        assert config.federation == base.federation
    shared_head = method_config(base, "fed-grow-shared-head", tmp_path)
    assert shared_head.federation.share_head and not base.federation.share_head
    assert {**vars(shared_head.federation), "share_head": False} == vars(base.federation)
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


def _method(test: list[list[float]], curve: list[tuple[int, float]]) -> dict:
    """A method summary with only what the targets read: common-test figures and a held-out curve."""
    from fedgrow_hf.reproduce.stats import seed_statistics

    return {"test_accuracy": seed_statistics(test), "curve": [{"steps": s, "accuracy": a} for s, a in curve]}


def test_the_claims_and_the_comparison_pair_seeds_with_one_statistic():
    """The paper's claims (points) and ``paired_differences`` (fractions) are the same per-seed differences;
    a report of a results.json written before they were shared still reads its ``fed_grow_better``."""
    from fedgrow_hf.reproduce.claims import _paired_points
    from fedgrow_hf.reproduce.results_markdown import _paired_table
    from fedgrow_hf.reproduce.stats import paired_differences

    methods = {"fed-grow": _method([[0.80, 0.80], [0.70, 0.70], [0.90, 0.90]], []),
               "independent": _method([[0.75, 0.75], [0.72, 0.72], [0.85, 0.85]], [])}
    difference = paired_differences(methods)["independent"]
    points = _paired_points(methods, "fed-grow", "independent", "test_accuracy")
    assert points["per_seed"] == pytest.approx([100 * value for value in difference["per_seed"]])
    assert points["better_on"] == difference["better_on"] == 2
    assert difference["std"] == pytest.approx(float(np.std([0.05, -0.02, 0.05], ddof=1)))
    assert _paired_points(methods, "fed-grow", "fed-scratch", "test_accuracy") is None
    methods["independent"]["label"] = "Independent growth"
    old = {key: value for key, value in difference.items() if key != "better_on"} | {"fed_grow_better": 2}
    assert _paired_table({"independent": old}, methods) == _paired_table({"independent": difference}, methods)


def test_the_claims_set_both_sharing_variants_beside_strict_fed_grow_and_the_baselines():
    """The authors' code shares more than the Global-LiGO (an intermediate model once, the task head every round):
    the claims pair each of those variants with strict Fed-Grow and with the baselines, seed by seed, and count
    their costs against Fed-Scratch's."""
    from fedgrow_hf.reproduce.claims import paper_claims

    def summary(accuracy: list[float], parameters: int, bytes_total: int) -> dict:
        figures = {"mean": float(np.mean(accuracy)), "per_seed": accuracy}
        return {**{metric: figures for metric in ("test_accuracy", "test_precision_macro", "accuracy",
                                                  "precision_macro")},
                "trainable_parameters": {"phase1_mean": parameters}, "bytes_total": bytes_total,
                "bytes_up_per_party_round": bytes_total // 10, "runs": []}

    methods = {"fed-grow": summary([0.36, 0.37], 10, 100), "independent": summary([0.37, 0.37], 10, 0),
               "fed-scratch": summary([0.25, 0.25], 100, 10_000),
               "fed-grow-shared-intermediate": summary([0.25, 0.26], 10, 1_000),
               "fed-grow-shared-head": summary([0.60, 0.56], 11, 110)}
    claims = paper_claims({"dirichlet-0.5": {"methods": methods, "party_data": [{}, {}]}})["partitions"]["dirichlet-0.5"]
    rows = claims["paired_points"]
    assert rows["fed-grow - fed-grow-shared-head"]["test_accuracy"]["per_seed"] == pytest.approx([-24, -19])
    assert rows["fed-grow-shared-head - independent"]["test_accuracy"]["per_seed"] == pytest.approx([23, 19])
    assert "fed-grow-shared-head - fed-grow-shared-intermediate" in rows and "fed-grow - fed-grow-shared-intermediate" in rows
    assert "fed-grow - central-ligo" not in rows  # not run here
    methods["central-ligo"] = summary([0.50, 0.52], 10, 0)
    again = paper_claims({"dirichlet-0.5": {"methods": methods, "party_data": [{}, {}]}})["partitions"]["dirichlet-0.5"]
    assert again["paired_points"]["fed-grow - central-ligo"]["test_accuracy"]["per_seed"] == pytest.approx([-14, -15])
    assert claims["costs"]["fed-grow-shared-head"] == {"trainable_parameters_vs_fed_scratch": pytest.approx(0.11),
                                                        "bytes_vs_fed_scratch": pytest.approx(0.011)}


def test_the_bytes_claim_is_one_transfer_as_the_papers_figure_with_the_runs_totals_beside():
    """The paper's -73.01% is the dense Global-LiGO's size over the whole model's: the claim is met or missed on
    one party's upload per round, and states each run's total share too (its protocol moves more or fewer models:
    Fed-Grow's initial and final Global-LiGO go down, Fed-Scratch's first round sends nothing down)."""
    from fedgrow_hf.reproduce.claims import TARGET_KEYS, paper_claims

    def summary(parameters: int, upload: int, total: int) -> dict:
        figures = {"mean": 0.5, "per_seed": [0.5]}
        return {**{metric: figures for metric in ("test_accuracy", "test_precision_macro", "accuracy",
                                                  "precision_macro")},
                "trainable_parameters": {"phase1_mean": parameters}, "bytes_up_per_party_round": upload,
                "bytes_total": total, "runs": []}

    methods = {"fed-grow": summary(3, 2, 21 * 2), "fed-grow-dense": summary(39, 26_84, 21 * 26_84),
               "independent": summary(3, 0, 0), "fed-scratch": summary(100, 100_00, 19 * 100_00)}
    targets = {target["key"]: target for target in
               paper_claims({"dirichlet-0.5": {"methods": methods, "party_data": [{}]}})["targets"]}
    sent = targets[TARGET_KEYS["bytes_up_per_party_round"]]
    assert sent["key"] == "bytes-vs-fed-scratch" and sent["met"] is True  # 26.84% per transfer <= 26.99%
    assert sent["target"].startswith("Fed-Grow's bytes exchanged (one party's upload per round) <= 26.99%")
    assert "dense operator (the paper's) 26.84%; head-Kronecker (ours) 0.02%" in sent["measured"]
    assert "of the run's total bytes, up and down: dense 29.67%, ours 0.02%" in sent["measured"]
    assert targets[TARGET_KEYS["trainable_parameters"]]["met"] is True  # 39% <= 40.75%


def test_the_aggregation_effect_is_what_the_average_and_the_local_steps_change():
    """Per party and round from 2 on: |start of round r - end of round r - 1| (the average) and |end - start| (local
    training), averaged over parties and rounds, then seeds; records without a start-of-round loss have neither."""
    def record(phase: str, round_: int, losses: dict[str, tuple[float, float]]) -> dict:
        return {"phase": phase, "round": round_,
                "parties": {party: {"eval_loss_before": before, "eval_loss": after} for party, (before, after) in losses.items()}}

    seed_0 = [record("operator", 1, {"0": (1.0, 0.8), "1": (1.0, 0.6)}),
              record("operator", 2, {"0": (0.9, 0.7), "1": (0.5, 0.45)}),  # moved 0.1 and 0.1; trained 0.2, 0.05
              record("finetune-federated", 1, {"0": (2.0, 2.0), "1": (2.0, 2.0)})]  # another phase: not paired with round 2
    seed_1 = [record("operator", 1, {"0": (1.0, 0.5)}), record("operator", 2, {"0": (0.5, 0.3), "1": (9.0, 1.0)})]
    effect = aggregation_effect({"runs": [{"records": seed_0}, {"records": seed_1}]})
    assert effect["per_seed"] == [pytest.approx({"by_average": 0.1, "by_local_training": 0.125}),
                                  pytest.approx({"by_average": 0.0, "by_local_training": 0.2})]  # party 1 joined late
    assert effect["by_average"] == pytest.approx(0.05) and effect["by_local_training"] == pytest.approx(0.1625)
    alone = [{"phase": "independent", "round": 1, "parties": {"0": {"eval_loss": 0.5}}}]
    assert aggregation_effect({"runs": [{"records": alone}]}) is None


def test_targets_say_which_is_missed_and_by_how_much_with_the_human_reason():
    from fedgrow_hf.reproduce.results_markdown import _targets_section
    from fedgrow_hf.reproduce.targets import issue_targets

    methods = {
        "fed-grow": _method([[0.80, 0.70], [0.82, 0.72]], [(10, 0.60), (20, 0.70), (50, 0.76)]),
        "own-source": _method([[0.79, 0.79], [0.79, 0.79]], [(10, 0.7), (50, 0.8)]),
        "independent": _method([[0.70, 0.74], [0.70, 0.74]], [(10, 0.7), (50, 0.8)]),
        "fed-scratch": _method([[0.5, 0.5], [0.5, 0.5]], [(10, 0.55), (50, 0.75)]),
    }
    targets = {target["key"]: target for target in issue_targets(methods)}
    assert targets["test-accuracy-vs-own-source"]["met"] is False
    assert targets["test-accuracy-vs-own-source"]["missed_by"] == "3.00 points of accuracy"  # 0.79 - 0.76
    assert targets["test-accuracy-vs-independent"]["met"] is True
    assert targets["party-spread-vs-independent"]["met"] is False  # 0.05 across parties vs 0.02
    assert targets["steps-to-fed-scratch"]["met"] is False and "50 of Fed-Scratch's 50 steps" in (
        targets["steps-to-fed-scratch"]["measured"])
    text = "\n".join(_targets_section(list(targets.values()), {"test-accuracy-vs-own-source": "MEASURED REASON"}))
    assert "**missed**; 0.7600 vs 0.7900 (-3.00 points); missed by 3.00 points of accuracy." in text
    assert 'notes["test-accuracy-vs-own-source"]' in text and "MEASURED REASON" in text
    assert text.count("_not written yet_") == 2  # the other two misses
    commented = "\n".join(_targets_section(list(targets.values()), {"test-accuracy-vs-independent": "WITHIN NOISE",
                                                                     "methods-not-run": "NOT RUN"}))
    assert 'Comment (written by a human, from `notes["test-accuracy-vs-independent"]`' in commented
    assert "WITHIN NOISE" in commented and 'Note (written by a human, from `notes["methods-not-run"]`' in commented
    methods["fed-grow"] = _method([[0.80, 0.70]] * 2, [(10, 0.5)])
    never = {target["key"]: target for target in issue_targets(methods)}["steps-to-fed-scratch"]
    assert never["met"] is False and never["measured"].startswith("not reached")
    assert issue_targets({"fed-grow": methods["fed-grow"]})[0]["met"] is None  # own-source not run


def test_a_rerun_keeps_the_human_notes_and_the_report_flags_them_until_rewritten(tmp_path):
    """``fedgrow reproduce`` replaces results.json: the reasons a human wrote survive, marked as written
    for the earlier measurement until ``notes_written_for`` names the new one."""
    from fedgrow_hf.reproduce.results_markdown import _stale_notes_warning, _targets_section
    from fedgrow_hf.reproduce.runner import _kept_notes

    previous = tmp_path / "results.json"
    assert _kept_notes(previous) == {}
    previous.write_text(json.dumps({"finished": "2026-11-01 10:00 UTC", "notes": {}}))
    assert _kept_notes(previous) == {}
    previous.write_text(json.dumps({"finished": "2026-11-01 10:00 UTC", "notes": {"k": "REASON"}}))
    kept = _kept_notes(previous)
    assert kept == {"notes": {"k": "REASON"}, "notes_written_for": "2026-11-01 10:00 UTC"}
    target = {"key": "k", "target": "T", "met": False, "measured": "m", "missed_by": "1 point"}
    rerun = {"finished": "2026-11-02 10:00 UTC", **kept}
    text = "\n".join(_targets_section([target], rerun["notes"], _stale_notes_warning(rerun)))
    assert "written for the measurement finished 2026-11-01 10:00 UTC, not for these figures" in text
    assert "REASON" in text
    rewritten = {**rerun, "notes_written_for": rerun["finished"]}
    assert _stale_notes_warning(rewritten) == "" and _stale_notes_warning({"finished": "x"}) == ""
    previous.write_text(json.dumps({**rewritten, "finished": "2026-11-03 10:00 UTC"}))
    assert _kept_notes(previous)["notes_written_for"] == "2026-11-02 10:00 UTC"  # still the measurement it fits


def test_report_leaves_out_other_benchmarks_results(tmp_path):
    """``benchmarks/results/`` also holds other benchmarks' ``results.json``: they are not comparisons."""
    from fedgrow_hf.reproduce.results_markdown import write_report

    (tmp_path / "results" / "growth_quality").mkdir(parents=True)
    (tmp_path / "results" / "growth_quality" / "results.json").write_text(json.dumps({"rows": []}))
    report = write_report(tmp_path / "results", tmp_path / "RESULTS.md", pending={"tiny": "`fedgrow reproduce tiny`"})
    text = report.read_text()
    assert "growth_quality" not in text and "- `tiny`: not measured yet; run `fedgrow reproduce tiny`." in text


def test_report_learning_rates_follow_the_training_defaults():
    """A user's config without ``[training].learning_rate`` reports the rate its parties really used."""
    from fedgrow_hf.experiment.training import training_arguments
    from fedgrow_hf.reproduce.results_markdown import _learning_rates

    config = _tiny()
    config.training = {}
    default = training_arguments(config, "unused", 1)
    assert _learning_rates({"config": config.to_dict(), "learning_rate_tuning": None}) == (
        f"Learning rates: operator {default.learning_rate:g}, full model {default.learning_rate:g}; "
        f"batch size {default.per_device_train_batch_size}."
    )
    config.federation.finetune_learning_rate = 2e-5
    assert "full model 2e-05" in _learning_rates({"config": config.to_dict(), "learning_rate_tuning": None})
