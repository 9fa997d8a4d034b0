"""Fixtures of the federated tests: a tiny Dual-LiGO text party on real SST-2 sentences."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from tests.ligo_factories import bert_config

INTERMEDIATE = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}


def tiny_bert(layers: int, hidden: int, heads: int, ffn: int, **kwargs) -> BertConfig:
    """A tiny BERT that takes MiniLM's token ids (:func:`tests.ligo_factories.bert_config`)."""
    return bert_config(layers, hidden, heads, ffn, vocab_size=30522, max_position_embeddings=64, **kwargs)


@pytest.fixture(scope="session")
def sst2_train(shared_data_dir: Path, minilm_path: Path) -> Dataset:
    """The first 256 real SST-2 training sentences, tokenised with MiniLM's tokenizer (max 32 tokens)."""
    with open(shared_data_dir / "sst2" / "train.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:256]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    encoded = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=32, padding="max_length")
    return Dataset.from_dict({**encoded, "labels": [int(r["label"]) for r in rows]})


@pytest.fixture
def make_party():
    """Factory: a tiny Dual-LiGO party (its own random small BERT source) growing into L4/H64."""
    from fedgrow_hf import grow

    def make(seed: int = 0, source_layers: int = 1, source_hidden: int = 16):
        torch.manual_seed(seed)
        source = BertModel(tiny_bert(source_layers, source_hidden, 2, 2 * source_hidden), add_pooling_layer=False)
        torch.manual_seed(100)  # the same task-head init for every party
        return grow(
            source, tiny_bert(4, 64, 4, 128, num_labels=2), model_class=BertForSequenceClassification,
            intermediate_config=INTERMEDIATE, modules_to_save=["classifier"],
        )

    return make


@contextmanager
def flower_task_identity() -> Iterator[None]:
    """What Flower's app runtimes set before an app runs: messages read the run id from it."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    try:
        yield
    finally:
        TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
TINY_CONFIG = CONFIGS / "demo-tiny.toml"
TINY_LLAMA_CONFIG = CONFIGS / "tiny-llama.toml"


def tiny_federation(shared_data_dir: Path, config_file: Path = TINY_CONFIG, data: str = "sst2", **federation):
    """A shipped tiny federation (the text one unless ``config_file``), on the real ``data`` beside the
    checkout, with overrides of ``[federation]``."""
    from fedgrow_hf.experiment.config import FederationConfig

    config = FederationConfig.load(config_file)
    config.data.source = str(shared_data_dir / data)
    for name, value in federation.items():
        setattr(config.federation, name, value)
    config.validate()
    return config


def pickle_mods_by_value() -> None:
    """Ray workers cannot import the tests package: ship the test mods by value."""
    import cloudpickle

    from tests.federated import mods

    cloudpickle.register_pickle_by_value(mods)


def read_records(directory: Path) -> list[dict]:
    """The messages the recording mod saw leaving the parties, with their arrays loaded."""
    import json

    import numpy as np

    records = []
    for summary in sorted(directory.glob("*.json")):
        record = json.loads(summary.read_text())
        for suffix, key in ((".npz", "sent"), ("-in.npz", "received")):
            path = summary.with_name(summary.stem + suffix)
            record[key] = dict(np.load(path)) if path.exists() else None
        records.append(record)
    return records


@pytest.fixture(scope="session")
def tiny_run(shared_data_dir, tmp_path_factory):
    """One simulated federation (Flower simulation engine, Ray), shared by several test modules.

    Three heterogeneous parties (random BERT sources of depth 1-2 and width 16-32) grow a BERT L4/H64
    together for 2 rounds on 300 real SST-2 sentences split non-IID, then fine-tune locally for 8 steps
    (phase 2, evaluated after steps 5 and 8). A client mod records every message that leaves a party.
    """
    pytest.importorskip("ray")
    from fedgrow_hf.federated.simulate import simulate
    from tests.federated.mods import make_recording_mod

    pickle_mods_by_value()
    config = tiny_federation(shared_data_dir, finetune_steps=8)
    run_dir = tmp_path_factory.mktemp("simulation")
    reports = []
    final = simulate(
        config, run_dir, on_round=reports.append, client_mods=[make_recording_mod(str(run_dir / "sent"))]
    )
    return {"config": config, "dir": run_dir, "final": final, "reports": reports,
            "sent": read_records(run_dir / "sent")}


@pytest.fixture(scope="session")
def tiny_llama_run(shared_data_dir, tmp_path_factory):
    """The shipped decoder federation (examples/configs/tiny-llama.toml), run in this process: two parties
    pretrain their own small Llamas on their shares of 200 AG News articles (into a fresh source cache) and grow one Llama
    L4/H64 for 2 rounds of 3 steps, then fine-tune it locally for 4 steps (evaluated after steps 3 and 4).
    A client mod records every message that leaves a party."""
    from fedgrow_hf.federated.simulate import simulate
    from tests.federated.mods import make_recording_mod

    config = tiny_federation(shared_data_dir, TINY_LLAMA_CONFIG, "agnews", local_steps=3, finetune_steps=4)
    run_dir = tmp_path_factory.mktemp("decoder-federation")
    config.data.limit, config.data.source_cache = 200, str(run_dir / "sources")
    reports = []
    final = simulate(config, run_dir / "run", on_round=reports.append, engine="inprocess",
                     client_mods=[make_recording_mod(str(run_dir / "sent"))])
    return {"config": config, "dir": run_dir / "run", "final": final, "reports": reports,
            "sent": read_records(run_dir / "sent")}


def check_only_global_ligo_left(run: dict) -> None:
    """Privacy: every message a party sent carries exactly the Global-LiGO arrays and scalar metrics (after
    local phase 2 also its held-out learning curves) -- no source, Local-LiGO, head or data."""
    from fedgrow_hf.experiment.parties import build_party_model
    from fedgrow_hf.experiment.training import finetune_eval_steps
    from fedgrow_hf.federated.screening import FINETUNE_CURVE

    config = run["config"]
    global_keys = set(run["final"])
    model = build_party_model(config, 0)
    private = set(model.local_state_dict()) | {n for n, _ in model.named_parameters() if "classifier" in n}
    train_sent = [r for r in run["sent"] if r["message_type"] == "train"]
    assert len(train_sent) == config.num_parties * config.federation.rounds
    for record in run["sent"]:
        types = set(record["record_types"].values())
        assert types <= {"ArrayRecord", "MetricRecord"}, record["record_types"]  # no config/data records
        for metrics in record["metrics"].values():
            curves = {name: metrics.pop(name) for name in FINETUNE_CURVE if name in metrics}
            assert all(isinstance(v, int | float) for v in metrics.values())
            points = len(finetune_eval_steps(config))
            assert all(len(curve) == points and all(isinstance(v, float) for v in curve) for curve in curves.values())
            assert set(curves) == (set() if record["message_type"] == "train" else set(FINETUNE_CURVE))
        if record["message_type"] == "train":
            assert set(record["arrays"]) == {"arrays"}
            sent_keys = set(record["arrays"]["arrays"])
            assert sent_keys == global_keys
            assert not sent_keys & private
            assert not any("sources" in k or "local_stages" in k or "classifier" in k for k in sent_keys)
        else:  # phase 2 (local): metrics only
            assert record["arrays"] == {}
