"""The ratchet attack of issue 26 on real in-process federations of the tiny config (40 rounds).

Party 0 trains, then sends the update that sits just inside a bound measured from the current state,
``c x (1 + 0.99 x update_norm_bound x max(1, |c|) / |c|)``, every round of phase 1 and of federated
phase 2 (its round 1 included, where the server knows no starting state); in the second attacked run it also
claims ``max_num_examples`` examples. Before median clipping (``federated/clipping.py``) this grew the
Global-LiGO's norm 24 -> 5e38 and stopped the federation within a few rounds. With the default clipping,
compared with the same seeds and no attack: no honest reply is dropped, the state's norm stays within 2x of
the no-attack run's every round of both phases, the run completes, the honest parties' final phase-1
accuracy is within 2 points, and so is federated phase 2's final model's on the common test set (the honest
parties' held-out shares, 33 examples, move 3 points an example: their phase-2 gap is printed, not asserted).
"""

from __future__ import annotations

import json
import os
from functools import partial

import pytest

from fedgrow_hf.reproduce.side_by_side import run_side_by_side
from tests.federated.conftest import tiny_federation
from tests.federated.mods import make_ratchet_mod

pytest.importorskip("flwr")

from fedgrow_hf.federated.simulate import simulate  # noqa: E402  (needs Flower)

pytestmark = pytest.mark.slow

# The 40 rounds (and 10 of federated phase 2): the three federations, side by side, take 70 s on 2 cores; these
# variables run the same test shorter.
ROUNDS = int(os.environ.get("FEDGROW_RATCHET_ROUNDS", "40"))
FINETUNE_ROUNDS = int(os.environ.get("FEDGROW_RATCHET_FINETUNE_ROUNDS", "10"))
ATTACKER, HONEST = 0, ("1", "2")
# Whole-model steps at the tiny config's operator rate (1e-2) make federated phase 2 oscillate with no attacker
# at all: measured at 40 + 10 rounds, the honest parties' held-out accuracy flipped between 0.235 and 0.765
# from round to round of the no-attack run, so comparing one final round with the attacked run's was a coin
# flip. Phase 2 trains at a whole-model rate here, as every preset's does.
FINETUNE_LEARNING_RATE = 1e-3


def _run(shared_data_dir, run_dir, attack: bool, claimed_examples: int | None = None) -> dict:
    from fedgrow_hf.federated.phases import METRICS_FILE

    config = tiny_federation(shared_data_dir, rounds=ROUNDS, phase2="federated", finetune_rounds=FINETUNE_ROUNDS,
                             finetune_learning_rate=FINETUNE_LEARNING_RATE)
    norms: dict = {}
    mod = make_ratchet_mod(ATTACKER, config.federation.update_norm_bound, norms, attack=attack,
                           claimed_examples=claimed_examples and config.federation.max_num_examples)
    final = simulate(config, run_dir, engine="inprocess", client_mods=[mod])
    records = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    return {"final": final, "norms": norms, "records": records, "test_accuracy": _test_accuracy(config, run_dir)}


def _test_accuracy(config, run_dir) -> float:
    """The accuracy of federated phase 2's final model (every party's) on the common test set (SST-2's 872
    labelled dev sentences): the honest parties' held-out shares hold 33 examples, one of which is 3 points."""
    from safetensors.torch import load_file

    from fedgrow_hf.experiment.data import common_test_set
    from fedgrow_hf.experiment.models import model_classes, target_config
    from fedgrow_hf.reproduce.methods import test_scores

    _, model_class = model_classes(config)
    model = model_class(target_config(config))
    model.load_state_dict(load_file(str(run_dir / "grown_model_fedavg.safetensors")), strict=True)
    return test_scores(model, config, common_test_set(config), run_dir / "test")["accuracy"]


@pytest.fixture(scope="module")
def runs(shared_data_dir, tmp_path_factory):
    """The three federations side by side, a worker process and a thread each, as ``reproduce(jobs=3)`` runs a
    comparison's runs: a tiny federation's kernels cannot use a second core (116 s one after the other, 65 s side by side, in .ci/run at 64a9f71 and d199513)."""
    federations = {"clean": (False, None), "ratchet": (True, None), "lying": (True, True)}
    runs = {}
    run_side_by_side({name: partial(_run, shared_data_dir, tmp_path_factory.mktemp(name), *attack)
                      for name, attack in federations.items()}, len(federations), runs.__setitem__)
    return runs


def _honest_accuracy(record: dict) -> float:
    return sum(record["parties"][party]["accuracy"] for party in HONEST) / len(HONEST)


@pytest.mark.parametrize("attack", ["ratchet", "lying"])
def test_hostile_ratchet_is_bounded_in_both_phases(runs, attack):
    from fedgrow_hf.federated.strategy import MEDIAN_AGGREGATE

    clean, attacked = runs["clean"], runs[attack]
    records = attacked["records"]
    assert [(r["phase"], r["round"]) for r in records] == [(r["phase"], r["round"]) for r in clean["records"]]
    assert len(records) == ROUNDS + FINETUNE_ROUNDS  # the run completed
    # no honest reply is dropped; the attacker's is clipped (or, beyond update_norm_bound, dropped) every round
    assert all(set(r["parties"]) >= set(HONEST) and {d["party"] for d in r["dropped"]} <= {ATTACKER} for r in records)
    # federated phase 2's first round, where each party starts from its own model, is a coordinate-wise median
    assert all(str(ATTACKER) in r["clipped"] or r["dropped"] or r.get("aggregate") == MEDIAN_AGGREGATE
               for r in records)
    assert clean["norms"].keys() == attacked["norms"].keys()
    for step, norm in attacked["norms"].items():
        assert norm <= 2 * clean["norms"][step], (step, norm, clean["norms"][step])
    ratios = {step: norm / clean["norms"][step] for step, norm in attacked["norms"].items()}
    gaps = {}
    for phase in ("operator", "finetune-federated"):
        final = [r for r in records if r["phase"] == phase][-1]
        reference = [r for r in clean["records"] if r["phase"] == phase][-1]
        gaps[phase] = abs(_honest_accuracy(final) - _honest_accuracy(reference))
        # what the threat model (docs/security.md) quotes (pytest -rA shows it)
        print(f"{attack} {phase}: honest accuracy {_honest_accuracy(final):.4f} (no attack "
              f"{_honest_accuracy(reference):.4f}); largest norm ratio to the no-attack run "
              f"{max(r for (kind, _), r in ratios.items() if (kind == 'train') == (phase == 'operator')):.4f}")
    print(f"{attack}: federated phase 2's final model, common test accuracy {attacked['test_accuracy']:.4f} "
          f"(no attack {clean['test_accuracy']:.4f}); honest held-out accuracy gap {gaps['finetune-federated']:.4f}")
    assert gaps["operator"] <= 0.02
    assert abs(attacked["test_accuracy"] - clean["test_accuracy"]) <= 0.02
