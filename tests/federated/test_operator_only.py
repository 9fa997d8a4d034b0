"""The operator-only regime (``phase2 = "merge"``: the Fed-Grow paper's), its variants, and the round-by-round
data stream every federated party trains on; on tiny shapes, real AG News articles, the in-process engine."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from fedgrow_hf.experiment.config import ConfigError, FederationConfig
from fedgrow_hf.experiment.data import common_test_set
from fedgrow_hf.experiment.models import HEAD_PREFIX, shared_heads
from fedgrow_hf.experiment.parties import (
    build_party_model,
    load_source,
    reference_global_stage,
    reference_intermediate_state,
    reference_shared_state,
)
from fedgrow_hf.experiment.stream import StreamSampler
from fedgrow_hf.experiment.training import training_arguments
from fedgrow_hf.reproduce.methods import own_source_model, run_method
from fedgrow_hf.reproduce.side_by_side import run_side_by_side

pytest.importorskip("flwr")

from fedgrow_hf.federated.checkpoint import load_checkpoint, run_identity, save_checkpoint  # noqa: E402
from fedgrow_hf.federated.phases import CONFIG_FILE  # noqa: E402
from fedgrow_hf.federated.simulate import resumable_round  # noqa: E402  (needs Flower)
from fedgrow_hf.federated.trainer import FedGrowTrainer  # noqa: E402
from fedgrow_hf.tuners.ligo import GlobalStateError  # noqa: E402
from tests.federated.conftest import TINY_LLAMA_CONFIG  # noqa: E402


def _shape(layers: int, hidden: int, **extra) -> dict:
    return {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": 4, "intermediate_size": hidden,
            **extra}


def paper_regime(data_dir: Path, cache: Path, parties: int = 2, **federation) -> FederationConfig:
    """The authors' protocol on tiny shapes: sources trained from scratch on each party's AG News share (one
    epoch), Dual-LiGO to an intermediate 2 x 40 and a target 3 x 48, 3 operator rounds, merged at the end."""
    return FederationConfig.from_dict({
        "name": "tiny-paper", "seed": 0, "data_seed": 0,
        "federation": {"rounds": 3, "local_steps": 3, "phase2": "merge", "round_timeout": 300,
                       "min_train_nodes": 1, **federation},
        "model": {"family": "bert", "num_labels": 4, "target": _shape(3, 48, max_position_embeddings=64),
                  "intermediate": _shape(2, 40)},
        "data": {"source": str(data_dir / "agnews"), "limit": 240, "partition": "dirichlet", "alpha": 1.0,
                 "min_size": 40, "max_length": 24, "tokenizer": "minilm", "source_cache": str(cache)},
        "training": {"learning_rate": 1e-3, "per_device_train_batch_size": 8},
        "parties": [{"pretrain": {**_shape(1 + party % 2, 32), "epochs": 1, "batch_size": 8}}
                    for party in range(parties)],
    })


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sources")


def _curve(run) -> list[float]:
    """Held-out loss of party 0 at each evaluation, after the steps it was measured at."""
    return [record["parties"]["0"]["eval_loss"] for record in run.records]


def _steps(run) -> list[int]:
    return [record["steps"] for record in run.records]


def test_pieces_of_the_stream_are_one_long_training():
    """Three rounds of 4 steps of 5 examples see what 12 uninterrupted steps see: each epoch a permutation."""
    pieces = [list(StreamSampler(7, seed=3, first=index * 20, count=20)) for index in range(3)]
    whole = list(StreamSampler(7, seed=3, first=0, count=60))
    assert sum(pieces, []) == whole
    for epoch in range(60 // 7):
        assert sorted(whole[epoch * 7:(epoch + 1) * 7]) == list(range(7))
    assert whole[:7] != whole[7:14]  # reshuffled every epoch
    assert list(StreamSampler(7, seed=4, first=0, count=7)) != whole[:7]


class Killed(RuntimeError):
    """Stands for the server process dying after a round was recorded, before it was checkpointed."""


def _killed_after_recording(round_: int):
    """An ``on_round`` that stops the run once phase-1 round ``round_`` is recorded, before its checkpoint is
    written: the narrowest window of a kill (the resume must redo that round, not count it twice)."""
    def on_round(report: dict) -> None:
        if report["phase"] == "operator" and report["round"] == round_:
            raise Killed(f"killed after round {round_}'s record")
    return on_round


@pytest.mark.slow
def test_a_one_party_federation_killed_and_resumed_is_independent_growth(shared_data_dir, cache, tmp_path):
    """With one party the average is the party's own update: the federated rounds (a Trainer per round, the
    optimizer and schedule restored by name, each round the next piece of the data stream) must reproduce one
    uninterrupted training of the same model, point for point; and so must the federation when it is killed
    in round 2 and ``fedgrow reproduce --resume`` (``run_method(resume=True)``) continues it from round 1's
    checkpoint rather than starting it again."""
    config = paper_regime(shared_data_dir, cache, parties=1)
    test_set = common_test_set(config).select(range(40))
    with pytest.raises(Killed):
        run_method(config, "fed-grow", tmp_path, test_set, engine="inprocess", on_round=_killed_after_recording(2))
    # a run an older release started, before a setting existed (here: share_head), ran with its default: it
    # resumes. Its config.json lacks the setting, and its checkpoint carries the hash of that config
    run_dir = tmp_path / "fed-grow"
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    del saved["federation"]["share_head"]
    (run_dir / CONFIG_FILE).write_text(json.dumps(saved, indent=2))
    older = load_checkpoint(run_dir)
    run_id = older.run["run_id"]
    save_checkpoint(run_dir, dataclasses.replace(older, run=run_identity(run_id, json.dumps(saved, sort_keys=True))))
    federated = run_method(config, "fed-grow", tmp_path, test_set, engine="inprocess", resume=True)
    # its times add what the earlier sitting's round 1 recorded: wall seconds and this process's CPU seconds
    first = federated.records[0]
    assert first["round"] == 1 and first["cpu_seconds"] > 0
    assert any(note.startswith("resumed after round 1 ") and f"{first['cpu_seconds']:.0f} CPU s" in note
               for note in federated.notes)
    assert federated.cpu_seconds > first["cpu_seconds"] and federated.wall_seconds > first["seconds"]
    run_dir = tmp_path / "fed-grow"
    assert resumable_round(run_dir, config) == 3
    assert resumable_round(run_dir, paper_regime(shared_data_dir, cache, parties=1, rounds=4)) is None  # starts afresh
    # a run killed after its last round (while scoring, which deletes each scored model) is run again whole,
    # from the party models as built: not the ones this process trained in that folder's earlier life
    again = run_method(config, "fed-grow", tmp_path, test_set, engine="inprocess", resume=True)
    assert not again.notes and again.test == federated.test
    alone = run_method(config, "independent", tmp_path, test_set, engine="inprocess")
    assert [phase for phase in (r["phase"] for r in federated.records)] == ["operator"] * 3 + ["finetune-merge"]
    assert _steps(federated)[:3] == _steps(alone) == [3, 6, 9]
    assert _curve(federated)[:3] == pytest.approx(_curve(alone), rel=1e-5)
    assert federated.test[0]["accuracy"] == alone.test[0]["accuracy"]
    assert federated.records[-1]["parties"]["0"]["eval_loss"] == pytest.approx(alone.records[-1]["parties"]["0"]["eval_loss"],
                                                                               rel=1e-5)


@pytest.mark.slow
def test_the_local_ligo_stays_fixed_after_local_ligo_rounds(shared_data_dir, cache, tmp_path):
    config = paper_regime(shared_data_dir, cache, local_ligo_rounds=1)
    run = run_method(config, "fed-grow", tmp_path, common_test_set(config).select(range(40)), engine="inprocess")
    assert run.records[-1]["phase"] == "finetune-merge"
    party_dir = tmp_path / "fed-grow" / "parties" / "party-0"
    rounds = {r: load_file(str(party_dir / f"round-{r:04d}" / "private_state.safetensors")) for r in (2, 3)}
    local = [key for key in rounds[2] if "local_stages" in key]
    assert local and all(torch.equal(rounds[2][key], rounds[3][key]) for key in local)
    head = [key for key in rounds[2] if "classifier" in key]
    assert head and not all(torch.equal(rounds[2][key], rounds[3][key]) for key in head)


@pytest.mark.slow
def test_the_shared_intermediate_is_sent_once_each_way(shared_data_dir, cache, tmp_path):
    """The authors' variant: each party's grown intermediate goes up once (the exchange after round 1), the
    average comes down once (with round 2) and every later round grows from it; the recorder-style check
    reads what the federation's own records say it moved."""
    config = paper_regime(shared_data_dir, cache, share_intermediate=True)
    run = run_method(config, "fed-grow-shared-intermediate", tmp_path, common_test_set(config).select(range(40)),
                     engine="inprocess")
    run_dir = tmp_path / "fed-grow-shared-intermediate"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["operator", "intermediate", "operator", "operator", "finetune-merge"]
    shared = load_file(str(run_dir / "shared_intermediate.safetensors"))
    size = sum(value.numel() * value.element_size() for value in shared.values())
    up = [party["bytes_up"] for party in records[1]["parties"].values()]
    assert len(up) == 2 and all(bytes_ >= size for bytes_ in up)
    downs = [[party["bytes_down"] for party in r["parties"].values()] for r in records if r["phase"] == "operator"]
    assert all(down >= size for down in downs[1]) and all(down < size for down in downs[0] + downs[2])
    for party in range(2):
        kept = load_file(str(run_dir / "parties" / f"party-{party}" / "shared_intermediate.safetensors"))
        assert all(torch.equal(kept[key], shared[key]) for key in shared)
        # scored, the party's model and the adapter it was merged from are deleted (no --keep-models)
        assert not (run_dir / "parties" / f"party-{party}" / "ligo_adapter").exists()
    assert len(run.test) == 2


def test_a_shared_head_starts_as_every_partys_own_and_loads_all_or_nothing(shared_data_dir, cache, tmp_path):
    """``share_head``: the server's first head is the one each party's grown model starts with (so the variant
    differs from strict Fed-Grow in what is averaged, nothing else); a party sends its head beside its
    Global-LiGO under ``head.``; a received state with a bad head changes neither the head nor the Global-LiGO."""
    config = paper_regime(shared_data_dir, cache, share_head=True)
    reference = reference_shared_state(config)
    heads = sorted(key for key in reference if key.startswith(HEAD_PREFIX))
    assert heads == ["head.classifier.bias", "head.classifier.weight"]
    assert set(reference) - set(heads) == set(reference_global_stage(config).state_dict())
    for party in range(2):
        trainer = FedGrowTrainer(build_party_model(config, party), training_arguments(config, tmp_path / "args", 1),
                                 party_dir=tmp_path / f"party-{party}", shared_heads=shared_heads(config))
        sent = trainer.get_global_state()
        assert sent.keys() == reference.keys() and all(torch.equal(sent[key], reference[key]) for key in heads)
    moved = {key: value + 1 if value.is_floating_point() else value for key, value in sent.items()}
    bad = {**moved, "head.classifier.weight": torch.zeros(5, 48)}
    with pytest.raises(GlobalStateError, match="task head key 'head.classifier.weight' has shape"):
        trainer.set_global_state(bad)
    assert all(torch.equal(value, sent[key]) for key, value in trainer.get_global_state().items())
    trainer.set_global_state(moved)
    assert all(torch.equal(value, moved[key]) for key, value in trainer.get_global_state().items())
    strict = FedGrowTrainer(trainer.model, training_arguments(config, tmp_path / "args", 1), party_dir=tmp_path / "s")
    assert strict.get_global_state().keys() == set(reference) - set(heads)


def test_with_share_head_a_round_trains_the_head_the_server_sent(shared_data_dir, cache, tmp_path):
    """A party's private state keeps its own head only where the head is not shared: a round must train the
    average it received, not the head the party ended the previous round with."""
    from fedgrow_hf.federated.party import train_party_round

    config = paper_regime(shared_data_dir, cache, share_head=True)
    sent, _ = train_party_round(config, tmp_path, 0, reference_shared_state(config), 1)
    received = {**sent, "head.classifier.weight": sent["head.classifier.weight"] + 1}
    again, _ = train_party_round(config, tmp_path, 0, received, 2)
    # 3 Adam steps at 1e-3 move an element by about 3e-3; the head of round 1 is 1 away
    moved = (again["head.classifier.weight"] - received["head.classifier.weight"]).abs().max()
    assert 0 < moved < 0.05


def test_with_share_head_the_head_travels_with_the_global_ligo_and_every_party_merges_the_average(
        shared_data_dir, cache, tmp_path):
    """A recorder around every party (in-process engine): each train reply carries exactly the Global-LiGO's and
    the head's keys; the final state holds the average, and every party's merged model has that head."""
    from fedgrow_hf.federated.simulate import simulate
    from tests.federated.conftest import read_records
    from tests.federated.mods import make_recording_mod

    config = paper_regime(shared_data_dir, cache, share_head=True)
    final = simulate(config, tmp_path, engine="inprocess", client_mods=[make_recording_mod(str(tmp_path / "sent"))])
    expected = {key: list(value.shape) for key, value in reference_shared_state(config).items()}
    train = [record for record in read_records(tmp_path / "sent") if record["message_type"] == "train"]
    assert len(train) == 2 * 3 and all(record["arrays"] == {"arrays": expected} for record in train)
    for party in range(2):
        merged = load_file(str(tmp_path / "parties" / f"party-{party}" / "grown" / "model.safetensors"))
        assert torch.equal(merged["classifier.weight"], final["head.classifier.weight"])
        assert torch.equal(merged["classifier.bias"], final["head.classifier.bias"])
    assert not torch.equal(final["head.classifier.weight"], reference_shared_state(config)["head.classifier.weight"])


@pytest.mark.parametrize(("federation", "ligo", "sent"), [
    ({}, {}, ()),
    ({}, {"grow_heads": True}, ()),
    ({"share_head": True, "share_intermediate": True}, {}, ("grown intermediate model", "task head")),
    ({"phase2": "federated", "finetune_rounds": 1, "finetune_steps": 2}, {}, ("whole model",)),
], ids=["strict", "strict-grown-heads", "shared-head-and-intermediate", "federated-phase-2"])
def test_every_partys_card_says_what_left_it(shared_data_dir, cache, tmp_path, federation, ligo, sent):
    """Each party's final model gets a card (beside it, from the adapter it was merged from, kept in the party's
    folder): strict Fed-Grow's says only the Global-LiGO left a party; a run that also averaged the head, the
    intermediate or the whole model lists exactly that. Also: the intermediate exchange of a run that shares the
    head loads the party's round without its head (a party's saved round leaves out what it shares). A head grown
    from the party's source is stated as grown, not as a new head trained beside the operator."""
    from fedgrow_hf.cli import main
    from fedgrow_hf.federated.simulate import simulate

    config = paper_regime(shared_data_dir, cache, **federation)
    config.model.ligo = ligo
    assert len(config.federation.sent_beyond_global_ligo()) == len(sent)
    simulate(config, tmp_path, engine="inprocess")
    for party in range(2):
        folder = tmp_path / "parties" / f"party-{party}"
        card = (folder / "grown" / "README.md").read_text()
        assert (folder / "ligo_adapter" / "adapter_config.json").is_file()
        assert f"{config.federation.rounds} federated rounds of {config.federation.local_steps} steps" in card
        # a card rendered again without any flag (fedgrow card / push) states the same from grown/federation.json
        again = tmp_path / f"again-{party}.md"
        assert main(["card", str(folder / "grown"), "--adapter", str(folder / "ligo_adapter"), "--output", str(again)]) == 0
        adapter_card = (folder / "ligo_adapter" / "README.md").read_text()
        assert "This repository holds the LiGO adapter" in adapter_card
        for text in (card, again.read_text(), adapter_card):
            assert ("Only Global-LiGO state left a party" in text) == (not sent)
            listed = [line for line in text.splitlines() if line.startswith("- its ")]
            assert len(listed) == len(sent) and all(any(part in line for line in listed) for part in sent)
            assert ("The task head (`classifier`) is grown from the sources' trained one" in text) == bool(ligo)
        for text in (card, adapter_card):  # the training facts: written by the party, not rendered again
            assert ("the LiGO operator (the classifier grown through it from the sources')" in text) == bool(ligo)
        _check_ledger(tmp_path, party, (card, again.read_text(), adapter_card), strict=not sent)


def _check_ledger(run_dir: Path, party: int, cards: tuple[str, ...], strict: bool) -> None:
    """The party's ledger (``ledger.jsonl``) holds each message it received and each reply it sent; its byte
    counts are the server's for that party (``metrics.jsonl``, every phase), and the cards state its totals. In
    strict Fed-Grow only the Global-LiGO's record (``arrays``) left it, in phase 1's replies only."""
    from fedgrow_hf.federated.ledger import ledger_path, ledger_totals
    from fedgrow_hf.federated.records import read_records as read_lines

    lines = read_lines(ledger_path(run_dir, party))
    server = [record["parties"][str(party)] for record in read_lines(run_dir / "metrics.jsonl")
              if str(party) in record.get("parties", {})]
    totals = ledger_totals(run_dir, party)
    assert totals.sent == sum(report["bytes_up"] for report in server) > 0
    assert totals.received == sum(report["bytes_down"] for report in server) > 0
    assert [line["direction"] for line in lines] == ["received", "sent"] * (len(lines) // 2)
    if strict:
        sent = [line for line in lines if line["direction"] == "sent" and line["records"]]
        assert sent and all(line["message_type"] == "train" and set(line["records"]) == {"arrays"} for line in sent)
    for text in cards:
        assert f"| {totals.received:,} / {totals.sent:,} |" in text


def test_share_head_is_refused_where_there_is_no_head_to_average_in_clear(shared_data_dir, cache):
    with pytest.raises(ConfigError, match="share_head cannot be combined with secure aggregation"):
        paper_regime(shared_data_dir, cache, share_head=True, secure_aggregation={"enabled": True})
    llama = FederationConfig.load(TINY_LLAMA_CONFIG).to_dict()
    llama["federation"]["share_head"] = True
    with pytest.raises(ConfigError, match="share_head averages a classifier's task head"):
        FederationConfig.from_dict(llama)


def test_share_intermediate_needs_a_second_round(shared_data_dir, cache):
    with pytest.raises(ConfigError, match="share_intermediate needs rounds >= 2"):
        paper_regime(shared_data_dir, cache, rounds=1, share_intermediate=True)


def test_scratch_trained_sources_are_cached_by_their_recipe(shared_data_dir, cache, monkeypatch):
    config = paper_regime(shared_data_dir, cache)
    first = load_source(config, 0)
    keys = {path.name for path in cache.iterdir() if not path.name.startswith(".")}
    import transformers

    def no_training(*args, **kwargs):
        raise AssertionError("a cached source was trained again")

    monkeypatch.setattr(transformers.Trainer, "train", no_training)
    again = load_source(config, 0)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    monkeypatch.undo()
    config.parties[0].pretrain["epochs"] = 2
    load_source(config, 0)
    assert len({path.name for path in cache.iterdir() if not path.name.startswith(".")} - keys) == 1


def _tiny_paper(data_dir: Path, cache: Path):
    """A preset with partitions (paper-agnews' shape, tiny)."""
    from fedgrow_hf.reproduce import presets

    raw = paper_regime(data_dir, cache).to_dict()  # an absolute data source: the data folder changes nothing
    settings = presets.ComparisonSettings(
        "tiny paper protocol", "seconds", seeds=(0, 1),
        methods=("fed-grow", "fed-grow-dense", "independent", "fed-scratch"),
        partitions=presets.PRESETS["paper-agnews"].settings.partitions)
    return presets.Preset("tiny-paper", raw, settings)


def _reproduce_tiny_paper(data_dir: Path, root: Path) -> partial:
    from fedgrow_hf.reproduce import runner

    return partial(runner.reproduce, "tiny-paper", data_dir=data_dir, output_dir=root / "results" / "tiny-paper",
                   work_dir=root / "work", engine="inprocess", tune=True)


def _partition_alone(data_dir: Path, cache: Path, root: Path, partition: str) -> dict:
    """``fedgrow reproduce tiny-paper --partitions <partition>`` as paper-agnews' second shell runs it, in a worker
    process (whose preset registry this changes)."""
    from fedgrow_hf.reproduce import presets

    presets.PRESETS["tiny-paper"] = _tiny_paper(data_dir, cache)
    return _reproduce_tiny_paper(data_dir, root)(partitions=[partition], log=lambda line: None)


@pytest.mark.slow
def test_a_partitioned_comparison_reports_the_claims(shared_data_dir, cache, tmp_path, monkeypatch):
    """``fedgrow reproduce`` of a preset with partitions: one results.json holding each partition's comparison
    and the claims, paired by seed, and a RESULTS.md section rendered from it. Each partition first runs alone
    (``--partitions``), both at once in two processes as paper-agnews' runs go, and writes no results; the run
    of every partition with ``--resume`` keeps their runs and writes them."""
    from fedgrow_hf.reproduce import presets

    monkeypatch.setitem(presets.PRESETS, "tiny-paper", _tiny_paper(shared_data_dir, cache))
    run, output = _reproduce_tiny_paper(shared_data_dir, tmp_path), tmp_path / "results" / "tiny-paper"
    with pytest.raises(ValueError, match="unknown partitions \\['dirichlet'\\]"):
        run(partitions=["dirichlet"])
    partitions, alone = ("dirichlet-0.5", "iid"), {}
    run_side_by_side({name: partial(_partition_alone, shared_data_dir, cache, tmp_path, name) for name in partitions},
                     len(partitions), alone.__setitem__)
    assert {name: set(result["partitions"]) for name, result in alone.items()} == {p: {p} for p in partitions}
    assert not output.exists()
    lines: list[str] = []
    results = run(resume=True, log=lines.append)
    # 2 partitions x (4 methods x 2 seeds + the operator's and Fed-Scratch's learning-rate searches)
    assert sum("kept from" in line for line in lines) == 20
    assert [sum(line.startswith(f"{name}: ") and "kept from" in line for line in lines) for name in partitions] == [10, 10]
    saved = json.loads((output / "results.json").read_text())
    for comparison in saved["partitions"].values():  # --tune: the operator's rate, chosen per partition
        tuning = comparison["learning_rate_tuning"]
        assert tuning["operator"]["chosen"] in tuning["operator"]["tried"] and tuning["own_source"] is None
        assert comparison["config"]["training"]["learning_rate"] == tuning["operator"]["chosen"]
        assert comparison["config"]["federation"]["finetune_learning_rate"] == tuning["chosen"]
    for name, result in alone.items():
        assert saved["partitions"][name]["methods"] == json.loads(json.dumps(result["partitions"][name]["methods"]))
    assert saved["partitions"].keys() == {"dirichlet-0.5", "iid"} == results["partitions"].keys()
    for comparison in saved["partitions"].values():
        grow = comparison["methods"]["fed-grow"]
        assert set(grow["test_precision_macro"]) >= {"mean", "std", "per_seed", "per_party"}
        assert len(grow["test_accuracy"]["per_seed"]) == 2 and len(grow["test_accuracy"]["per_party"]) == 2
    claims = saved["claims"]["partitions"]["dirichlet-0.5"]
    methods = saved["partitions"]["dirichlet-0.5"]["methods"]
    expected = [100 * (a - b) for a, b in zip(methods["fed-grow"]["test_accuracy"]["per_seed"],
                                              methods["independent"]["test_accuracy"]["per_seed"])]
    assert claims["paired_points"]["fed-grow - independent"]["test_accuracy"]["per_seed"] == pytest.approx(expected)
    dense_share = claims["costs"]["fed-grow-dense"]["trainable_parameters_vs_fed_scratch"]
    assert dense_share == pytest.approx(methods["fed-grow-dense"]["trainable_parameters"]["phase1_mean"]
                                        / methods["fed-scratch"]["trainable_parameters"]["phase1_mean"])
    assert claims["costs"]["fed-grow"]["bytes_vs_fed_scratch"] < dense_share  # the Kronecker operator is smaller
    # what the average changes in a party: measured for every federation, for no run alone
    assert set(claims["aggregation_effect"]) == {"fed-grow", "fed-grow-dense", "fed-scratch"}
    assert all(effect["by_local_training"] > 0 for effect in claims["aggregation_effect"].values())
    # the fourth, what not sharing a model costs, needs the shared-intermediate variant (not run here)
    assert [target["met"] is None for target in saved["claims"]["targets"]] == [False, False, False, True]
    assert saved["claims"]["targets"][3]["measured"] == "needs fed-grow-shared-intermediate"
    report = (tmp_path / "RESULTS.md").read_text()  # beside the folder holding results/
    for comparison in saved["partitions"].values():  # the sittings' runs and searches, not the last sitting
        runs = [run for method in comparison["methods"].values() for run in method["runs"]]
        searches = (comparison["learning_rate_tuning"], comparison["learning_rate_tuning"]["operator"])
        assert comparison["compute"]["cpu"] == pytest.approx(sum(run["cpu_seconds"] for run in runs)
                                                             + sum(search["cpu_seconds"] for search in searches), abs=0.5)
        assert comparison["compute"]["untimed"] == 0 and comparison["compute"]["wall"] > comparison["wall_seconds"]
    assert "What these figures cost, each partition's runs and searches summed" in report
    assert "The operator's learning rate: " in report and "a Fed-Scratch party alone" in report
    assert "## `tiny-paper`" in report and "partition `iid`" in report and "| By the average |" in report and (output / "iid" / "accuracy_vs_steps.png").is_file()
    # notes a human adds: on a claim (by its key), on one partition's own target ("<partition>/<key>"), on none
    from fedgrow_hf.reproduce.runner import _kept_notes, rewrite_report

    claim = saved["claims"]["targets"][0]
    assert claim["key"] == "fed-grow-over-independent-non-iid" and claim["met"] is False and claim["missed_by"]
    saved["notes"] = {claim["key"]: "CLAIM REASON", "iid/test-accuracy-vs-independent": "IID NOTE", "other": "FREE NOTE"}
    assert saved["finished"] == max(comparison["finished"] for comparison in saved["partitions"].values())
    saved["notes_written_for"] = saved["finished"]
    (output / "results.json").write_text(json.dumps(saved))
    claims_part, _, partitions_part = rewrite_report(output, tmp_path / "RESULTS.md").read_text().partition(
        "### `tiny-paper`, partition `dirichlet-0.5`")
    assert 'Reason (written by a human, from `notes["fed-grow-over-independent-non-iid"]`' in claims_part
    assert "CLAIM REASON" in claims_part and "FREE NOTE" in claims_part and "IID NOTE" not in claims_part
    assert partitions_part.count("IID NOTE") == 1 and partitions_part.index("IID NOTE") > partitions_part.index(
        "partition `iid`") and "written for the measurement" not in partitions_part + claims_part
    assert _kept_notes(output / "results.json")["notes_written_for"] == saved["finished"]


@pytest.mark.slow
def test_a_killed_run_of_the_regime_resumes_to_the_same_result(shared_data_dir, cache, tmp_path):
    """The shared-intermediate variant killed in round 2 (after the intermediate exchange) and resumed ends with
    the uninterrupted run's Global-LiGO and the same merged models; had the kill come between the averaged
    intermediate's file and its record, the resumed run appends that record, once."""
    from fedgrow_hf.federated.phases import METRICS_FILE
    from fedgrow_hf.federated.records import read_records, truncate_records
    from fedgrow_hf.federated.simulate import simulate

    config = paper_regime(shared_data_dir, cache, share_intermediate=True, local_ligo_rounds=1)
    whole = simulate(config, tmp_path / "whole", engine="inprocess")

    with pytest.raises(Killed):
        simulate(config, tmp_path / "killed", engine="inprocess", on_round=_killed_after_recording(2))
    truncate_records(tmp_path / "killed" / METRICS_FILE, lambda record: record["phase"] != "intermediate")
    resumed = simulate(config, tmp_path / "killed", engine="inprocess", resume=True)
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    exchanges = [[{k: v for k, v in r.items() if k != "seconds"} for r in read_records(run / METRICS_FILE)
                  if r["phase"] == "intermediate"] for run in (tmp_path / "whole", tmp_path / "killed")]
    assert len(exchanges[1]) == 1 and exchanges[0] == exchanges[1]
    for party in range(2):
        merged = [load_file(str(run / "parties" / f"party-{party}" / "grown" / "model.safetensors"))
                  for run in (tmp_path / "whole", tmp_path / "killed")]
        assert all(torch.allclose(merged[0][key], merged[1][key]) for key in merged[0])


@pytest.mark.slow
@pytest.mark.parametrize("share", ["strict", "shared-intermediate", "shared-head"])
def test_under_ray_only_the_global_ligo_leaves_a_party(shared_data_dir, cache, tmp_path, share):
    """Flower's simulation engine with a recording mod around every party: in the operator-only regime every
    train reply carries exactly the Global-LiGO's keys and the merge replies carry figures only; with
    ``share_intermediate`` each party sends its intermediate once (one ``train.intermediate`` reply), and a
    round may run a party in another worker, which finds its shared intermediate in its folder; with
    ``share_head`` the head travels beside the Global-LiGO, and a round in a fresh worker trains the head it
    received."""
    pytest.importorskip("ray")
    from fedgrow_hf.experiment.parties import reference_intermediate_state
    from fedgrow_hf.federated.simulate import simulate
    from tests.federated.conftest import pickle_mods_by_value, read_records
    from tests.federated.mods import make_recording_mod

    pickle_mods_by_value()
    intermediate, head = share == "shared-intermediate", share == "shared-head"
    config = paper_regime(shared_data_dir, cache, share_intermediate=intermediate, share_head=head)
    final = simulate(config, tmp_path, engine="ray", client_mods=[make_recording_mod(str(tmp_path / "sent"))])
    phases = [json.loads(line)["phase"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["operator", *(["intermediate"] if intermediate else []), "operator", "operator", "finetune-merge"]
    reference = reference_shared_state(config)
    assert (set(reference) > set(reference_global_stage(config).state_dict())) == head
    round_keys = {key: list(value.shape) for key, value in reference.items()}
    intermediate_keys = {key: list(value.shape) for key, value in reference_intermediate_state(config).items()}
    sent = read_records(tmp_path / "sent")
    by_type: dict[str, list] = {}
    for record in sent:
        by_type.setdefault(record["message_type"], []).append(record)
    assert all(record["arrays"] == {"arrays": round_keys} for record in by_type["train"])
    assert len(by_type["train"]) == 2 * 3
    assert all(record["arrays"] == {} for record in by_type["train.finetune"]) and len(by_type["train.finetune"]) == 2
    shared = by_type.get("train.intermediate", [])
    assert sorted(record["party"] for record in shared) == ([0, 1] if intermediate else [])
    assert all(record["arrays"] == {"arrays": intermediate_keys} for record in shared)
    assert all((tmp_path / "parties" / f"party-{party}" / "grown" / "config.json").is_file() for party in range(2))
    if head:  # 3 Adam steps at 1e-3 move a head element by about 3e-3 from the average the party received
        key = "head.classifier.weight"
        assert all(np.abs(r["sent"][key] - r["received"][key]).max() < 0.05 for r in by_type["train"])
        merged = [load_file(str(tmp_path / "parties" / f"party-{party}" / "grown" / "model.safetensors"))
                  for party in range(2)]
        assert all(torch.equal(model["classifier.weight"], final[key]) for model in merged)


def test_a_learning_rate_search_scores_on_data_no_source_has_seen(shared_data_dir, cache, tmp_path):
    """``--tune``'s development split is held out of a party's training share before anything is built from it:
    a ``pretrain`` source (trained with labels, for epochs, on the share) is trained for the search on the rest,
    in a cache entry of its own, so the search does not score a source on examples it learnt."""
    from fedgrow_hf.experiment.data import party_datasets, party_dev_set, party_shares
    from fedgrow_hf.reproduce.tuning import DEV_FRACTION, search_learning_rate

    config, seen = paper_regime(shared_data_dir, cache), []

    def score(trial: FederationConfig, party: int, train, dev, output_dir) -> float:
        texts, _ = party_shares(trial, party)
        seen.append((trial.data.dev_fraction, len(train), len(texts), len(dev)))
        return 0.5

    search_learning_rate(config, score, tmp_path, grid=(1e-3,), ladder=(1e-3,), log=lambda line: None)
    whole = [len(party_datasets(config, party)[0]) for party in range(config.num_parties)]
    assert [(fraction, train + dev) for fraction, train, _, dev in seen] == [(DEV_FRACTION, n) for n in whole]
    assert all(train == texts and dev == pytest.approx(DEV_FRACTION * (train + dev), abs=1)
               for _, train, texts, dev in seen)
    searched = copy.deepcopy(config)
    searched.data.dev_fraction = DEV_FRACTION
    # what the search trains on is the run's training share less exactly the development split
    kept, everything = Counter(party_shares(searched, 0)[0]["text"]), Counter(party_shares(config, 0)[0]["text"])
    assert not kept - everything and sum((everything - kept).values()) == len(party_dev_set(searched, 0)) > 0
    run_source, search_source = load_source(config, 0), load_source(searched, 0)
    assert not torch.equal(run_source.embeddings.word_embeddings.weight, search_source.embeddings.word_embeddings.weight)
    assert torch.equal(load_source(config, 0).embeddings.word_embeddings.weight, run_source.embeddings.word_embeddings.weight)


def test_grow_heads_grows_each_partys_head_from_its_pretrained_source(shared_data_dir, cache):
    """``[model].ligo.grow_heads``: a ``pretrain`` source is kept with its trained head (a cache entry of its own,
    beside the encoder-only one), each party's grown model grows its classifier from it, the shared intermediate
    carries it, and own-source fine-tuning keeps it; refused where there is no BERT head to grow, beside a shared
    head, or when it names what growth records."""
    config = paper_regime(shared_data_dir, cache)
    config.model.ligo = {"grow_heads": True}
    source = load_source(config, 0)
    assert isinstance(source, BertForSequenceClassification)
    encoder = load_source(paper_regime(shared_data_dir, cache), 0)
    assert all(torch.equal(value, source.bert.state_dict()[key]) for key, value in encoder.state_dict().items())
    model = build_party_model(config, 0)
    assert model.peft_config["default"].grown_heads == ["classifier"]
    intermediate = model.base_model.intermediate_state_dict()
    reference = reference_intermediate_state(config)
    assert {key: value.shape for key, value in intermediate.items()} == {key: value.shape for key, value in reference.items()}
    assert "shared.classifier.weight" in reference
    assert torch.equal(own_source_model(config, 0).classifier.weight, source.classifier.weight)
    with pytest.raises(ConfigError, match="cannot be combined with \\[model\\].ligo.grow_heads"):
        FederationConfig.from_dict({**config.to_dict(), "federation": {**config.to_dict()["federation"], "share_head": True}})
    llama = FederationConfig.load(TINY_LLAMA_CONFIG).to_dict()
    llama["model"]["ligo"] = {"grow_heads": True}
    with pytest.raises(ConfigError, match="a 'llama' federation has no head it can grow"):
        FederationConfig.from_dict(llama)
    with pytest.raises(ConfigError, match="grown_heads is what growth records"):
        FederationConfig.from_dict({**config.to_dict(), "model": {**config.to_dict()["model"], "ligo": {"grown_heads": []}}})


def test_a_random_source_under_grow_heads_has_a_random_head_to_grow(shared_data_dir, cache):
    """A ``random`` source (a shape alone, as ``benchmarks/bench_party_step.py`` builds every party's) under
    ``grow_heads`` is a classifier with a seeded random head of the task's labels, so the party's grown model and
    own-source fine-tuning build from it as from a pretrained one (without a head, both refused it)."""
    config = paper_regime(shared_data_dir, cache)
    config.model.ligo = {"grow_heads": True}
    for party in config.parties:
        party.random, party.pretrain = _shape(1, 32), None
    source = load_source(config, 0)
    assert isinstance(source, BertForSequenceClassification) and source.config.num_labels == 4
    assert torch.equal(load_source(config, 0).classifier.weight, source.classifier.weight)
    assert build_party_model(config, 1).peft_config["default"].grown_heads == ["classifier"]
    assert torch.equal(own_source_model(config, 0).classifier.weight, source.classifier.weight)
    config.model.ligo = {}
    assert not isinstance(load_source(config, 0), BertForSequenceClassification)  # no head where none is grown
