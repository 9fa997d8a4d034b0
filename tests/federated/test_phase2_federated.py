"""Phase 2 as the comparison baseline: FedAvg of the parties' merged grown models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.federated.conftest import tiny_federation

pytest.importorskip("flwr")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow


def test_federated_finetuning_of_the_grown_model(shared_data_dir, tmp_path):
    from flwr.app import ArrayRecord
    from transformers import BertForSequenceClassification

    from fedgrow_hf.experiment.models import target_config
    from fedgrow_hf.federated.screening import payload_bytes
    from fedgrow_hf.federated.simulate import simulate

    config = tiny_federation(shared_data_dir, rounds=1, local_steps=2, phase2="federated",
                             finetune_rounds=2, finetune_steps=2)
    config.parties = config.parties[:2]
    config.validate()
    simulate(config, tmp_path)

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["round"]) for r in lines] == [
        ("operator", 1), ("finetune-federated", 1), ("finetune-federated", 2)
    ]
    averaged = load_file(str(tmp_path / "grown_model_fedavg.safetensors"))
    model = BertForSequenceClassification(target_config(config))
    model.load_state_dict(averaged)  # strict: the whole grown model, nothing else
    full = payload_bytes(ArrayRecord(model.state_dict()))
    for line in lines[1:]:
        assert set(line["parties"]) == {"0", "1"}
        assert all(p["bytes_up"] == full for p in line["parties"].values())
    # round 2 starts every party from round 1's average: it is what was sent down
    assert lines[2]["parties"]["0"]["bytes_down"] == full
    assert all(torch.isfinite(v).all() for v in averaged.values())
    for party in ("party-0", "party-1"):  # each party keeps the model it trained last (scored by reproduce)
        kept = BertForSequenceClassification.from_pretrained(tmp_path / "parties" / party / "grown")
        assert kept.config.hidden_size == target_config(config).hidden_size
