"""The server under faults, in one simulated federation with Flower's DP wrapper switched on.

Round 1: party 2 sends a NaN -> dropped, the round completes with parties 0 and 1.
Round 2, attempt 1: party 1 crashes and party 0 sends an extra (non-Global-LiGO) key -> only one
valid update < min_train_nodes=2 -> the round is run again; attempt 2: party 2 hangs past the round
timeout, the round completes with parties 0 and 1.
Round 3: every party crashes on both attempts -> the federation stops cleanly, checkpoint of round 2
intact. Server-side fixed-clipping DP is on throughout; round 1's result is checked against clipping
+ noise of exactly the recorded updates.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.federated.conftest import pickle_mods_by_value, read_records, tiny_federation

pytest.importorskip("flwr")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow

NOISE, CLIP = 0.5, 0.05
FAULTS = {"2:1:1": "nan", "1:2:1": "crash", "0:2:1": "extra_key", "2:2:2": "hang"}
# the hang is waited out: the timeout leaves round 1 (which also builds every model under Ray) almost 4x its
# time, 16 s measured on 2 cores with two niced jobs beside the tests (45 s was too short with a second pytest
# process beside it, and 60 s once beside a job at normal priority, before round 1 got faster). Timeouts as
# such are tested with a scripted grid and a 1 s timeout (test_hostile.py).
TIMEOUT, HANG = 60, 65
FAULTS.update({f"{party}:3:{attempt}": "crash" for party in range(3) for attempt in (1, 2)})


@pytest.fixture(scope="module")
def faulty_run(shared_data_dir, tmp_path_factory):
    from fedgrow_hf.federated.simulate import simulate
    from tests.federated.mods import make_fault_mod, make_recording_mod

    pickle_mods_by_value()
    config = tiny_federation(
        shared_data_dir, rounds=3, local_steps=2, round_retries=1, phase2="none", round_timeout=TIMEOUT,
        dp_noise_multiplier=NOISE, dp_clipping_norm=CLIP,
    )
    run_dir = tmp_path_factory.mktemp("faulty")
    reports = []
    # the recording mod is outermost: it sees what really leaves the party, faults included
    mods = [make_recording_mod(str(run_dir / "sent")), make_fault_mod(FAULTS, hang_seconds=HANG)]
    with pytest.raises(Exception, match="fewer than min_train_nodes") as aborted:
        simulate(config, run_dir, on_round=reports.append, client_mods=mods)
    return {"config": config, "dir": run_dir, "reports": reports, "error": aborted.value,
            "sent": read_records(run_dir / "sent")}


def test_bad_updates_are_dropped_naming_party_and_key(faulty_run):
    first = faulty_run["reports"][0]
    assert set(first["parties"]) == {"0", "1"} and first["attempts"] == 1
    (dropped,) = first["dropped"]
    assert dropped["party"] == 2 and "non-finite" in dropped["reason"]
    nan_record = next(r for r in faulty_run["sent"] if r["party"] == 2 and r["server_round"] == 1)
    nan_key = next(k for k, v in nan_record["sent"].items() if not np.isfinite(v).all())
    assert f"'{nan_key}'" in dropped["reason"]


def test_round_is_retried_when_too_few_valid_updates(faulty_run):
    second = faulty_run["reports"][1]
    assert second["round"] == 2 and second["attempts"] == 2


def test_party_timing_out_does_not_stop_the_round(faulty_run):
    second = faulty_run["reports"][1]
    assert set(second["parties"]) == {"0", "1"} and second["no_reply"] == 1  # party 2 hung past the timeout
    assert second["seconds"] >= TIMEOUT


def test_crash_and_foreign_key_do_not_stop_the_run(faulty_run):
    dropped = {d["party"]: d for d in faulty_run["reports"][1]["dropped"]}
    assert set(dropped) == {0, 1} and all(d["attempt"] == 1 for d in dropped.values())
    # the category only: the exception's text (paths, source lines) stays in the party's log
    assert dropped[1]["reason"] == "party failed: RuntimeError (details in the party's log)"
    assert "unexpected ['base_model.model.bert.embeddings.word_embeddings.weight']" in dropped[0]["reason"]
    assert len(faulty_run["reports"]) == 2  # rounds 1 and 2 completed despite both


def test_abort_is_clean_and_checkpoint_intact(faulty_run):
    assert "round 3" in str(faulty_run["error"])
    run_dir = faulty_run["dir"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2]
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["round"] == 2
    checkpointed = load_file(str(run_dir / "checkpoint" / state["operator"]))
    assert all(torch.isfinite(v).all() for v in checkpointed.values())
    assert not (run_dir / "global_operator.safetensors").exists()


def test_dp_clipping_and_noise_are_applied(faulty_run):
    """Round 1's aggregate == init + weighted mean of the *clipped* valid updates + N(0, noise*clip/3)."""
    from fedgrow_hf.experiment.parties import reference_global_stage

    init = {k: v.numpy() for k, v in reference_global_stage(faulty_run["config"]).state_dict().items()}
    valid = [r for r in faulty_run["sent"] if r["server_round"] == 1 and r["party"] in (0, 1)]
    weights = np.array([r["metrics"]["metrics"]["num-examples"] for r in valid], dtype=np.float64)
    keys = sorted(init)
    clipped = []
    for record in valid:
        update = np.concatenate([(record["sent"][k] - init[k]).ravel() for k in keys])
        assert np.linalg.norm(update) > CLIP  # clipping really bites
        clipped.append(update * min(1.0, CLIP / np.linalg.norm(update)))
    expected = np.concatenate([init[k].ravel() for k in keys]) + np.average(clipped, axis=0, weights=weights)
    round2 = next(r for r in faulty_run["sent"] if r["server_round"] == 2)["received"]
    residual = np.concatenate([round2[k].ravel() for k in keys]) - expected
    assert residual.std() == pytest.approx(NOISE * CLIP / 3, rel=0.1)
    assert abs(residual.mean()) < 0.1 * residual.std()
