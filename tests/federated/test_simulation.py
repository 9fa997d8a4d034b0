"""Checks on one simulated federation (the session fixture ``tiny_run``, see conftest.py)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("flwr")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def _operator_rounds(run) -> list[dict]:
    return [r for r in run["reports"] if r["phase"] == "operator"]


def test_global_operator_changed(run):
    from fedgrow_hf.experiment.parties import reference_global_stage

    initial = reference_global_stage(run["config"]).state_dict()
    final = run["final"]
    assert set(final) == set(initial)
    changed = [key for key in final if not torch.allclose(final[key], initial[key])]
    assert len(changed) == len(final), f"unchanged Global-LiGO tensors: {set(final) - set(changed)}"
    saved = load_file(str(run["dir"] / "global_operator.safetensors"))
    assert all(torch.equal(saved[k], final[k]) for k in final)


def test_every_party_loss_went_down(run):
    first, last = _operator_rounds(run)[0], _operator_rounds(run)[-1]
    assert set(first["parties"]) == set(last["parties"]) == {"0", "1", "2"}
    for party in first["parties"]:
        before = first["parties"][party]["eval_loss_before"]
        after = last["parties"][party]["eval_loss"]
        assert after < before, f"party {party}: held-out loss {before:.4f} -> {after:.4f}"


def test_bytes_per_round_equal_serialized_global_ligo(run):
    from flwr.app import ArrayRecord

    from fedgrow_hf.experiment.parties import reference_global_stage
    from fedgrow_hf.federated.screening import payload_bytes

    size = payload_bytes(ArrayRecord(reference_global_stage(run["config"]).state_dict()))
    for report in _operator_rounds(run):
        for party, stats in report["parties"].items():
            assert stats["bytes_up"] == size and stats["bytes_down"] == size, (report["round"], party)


def test_metrics_jsonl_and_checkpoint(run):
    lines = [json.loads(line) for line in (run["dir"] / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["round"]) for r in lines] == [("operator", 1), ("operator", 2), ("finetune-local", 1)]
    for line in lines:
        assert {"loss", "accuracy", "parties"} <= set(line) and 0 <= line["accuracy"] <= 1
        assert all({"bytes_up", "bytes_down", "eval_loss", "accuracy"} <= set(p) for p in line["parties"].values())
    state = json.loads((run["dir"] / "checkpoint" / "state.json").read_text())
    assert state["round"] == 2
    checkpointed = load_file(str(run["dir"] / "checkpoint" / state["operator"]))
    assert all(torch.equal(checkpointed[k], run["final"][k]) for k in run["final"])


def test_phase2_parties_merge_and_finetune_locally(run):
    from transformers import BertForSequenceClassification

    from fedgrow_hf.experiment.training import finetune_eval_steps

    finetune = [r for r in run["reports"] if r["phase"] == "finetune-local"]
    assert len(finetune) == 1 and set(finetune[0]["parties"]) == {"0", "1", "2"}
    assert all(p["bytes_up"] == 0 for p in finetune[0]["parties"].values())  # the grown model stays home
    for party, metrics in finetune[0]["parties"].items():  # the held-out curve, its last point the final figures
        curve = metrics["curve"]
        assert [point["steps"] for point in curve] == finetune_eval_steps(run["config"]) == [5, 8], party
        assert all(0 <= point["accuracy"] <= 1 and point["eval_loss"] > 0 for point in curve), party
        assert {key: curve[-1][key] for key in ("accuracy", "precision_macro", "eval_loss")} == {
            key: metrics[key] for key in ("accuracy", "precision_macro", "eval_loss")}, party
    grown = BertForSequenceClassification.from_pretrained(run["dir"] / "parties" / "party-1" / "grown")
    assert grown.config.num_hidden_layers == 4 and grown.config.hidden_size == 64
