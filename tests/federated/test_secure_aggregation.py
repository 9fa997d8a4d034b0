"""Opt-in SecAgg+ (``[federation].secure_aggregation``): parties send only masked vectors, and the
server's aggregate is still the example-weighted mean of the plain Global-LiGO updates."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from fedgrow_hf.federated.engine import SimulationEngine
from tests.federated.conftest import flower_task_identity, tiny_federation

pytest.importorskip("flwr")

SECAGG = {"enabled": True, "num_shares": 3, "reconstruction_threshold": 2, "max_weight": 200.0}
ATOL = 5e-5  # SecAgg+ quantisation: 2 * clipping_range / quantization_range per party, / total weight
STAGES = ["setup", "share_keys", "collect_masked_vectors", "unmask"]


# ----------------------------------------------------------------------------------------------------
# mods (run inside Ray workers: this module is pickled by value)
# ----------------------------------------------------------------------------------------------------
def make_outer_recorder(directory: str):
    """Around ``secaggplus_mod``: what leaves the party, per SecAgg+ stage."""

    def record(msg, context, call_next):
        from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

        stage = msg.content.config_records[RECORD_KEY_CONFIGS]["stage"]  # the mod pops it
        reply = call_next(msg, context)
        configs = dict(reply.content.config_records.get(RECORD_KEY_CONFIGS, {}))
        name = Path(directory) / uuid.uuid4().hex
        Path(directory).mkdir(parents=True, exist_ok=True)
        masked = configs.get("masked_params", [])
        summary = {
            "party": int(context.node_config["partition-id"]),
            "stage": stage,
            "reply_arrays": {r: len(a) for r, a in reply.content.array_records.items()},
            "reply_configs": sorted(configs),
            "payload": b"".join(v for v in configs.values() if isinstance(v, bytes)).hex()
            + b"".join(b for v in configs.values() if isinstance(v, list) for b in v if isinstance(b, bytes)).hex(),
        }
        name.with_suffix(".json").write_text(json.dumps(summary))
        if masked:
            from flwr.common import bytes_to_ndarray

            np.savez(name.with_suffix(".npz"), *[bytes_to_ndarray(b) for b in masked])
        return reply

    return record


def make_inner_recorder(directory: str):
    """Between ``secaggplus_mod`` and the party: the plain update before masking, and what came in."""

    def record(msg, context, call_next):
        from flwr.common import parameters_to_ndarrays
        from flwr.compat.common import recorddict_compat as compat

        reply = call_next(msg, context)
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        name = Path(directory) / uuid.uuid4().hex
        Path(directory).mkdir(parents=True, exist_ok=True)
        summary = {
            "party": int(context.node_config["partition-id"]),
            "round": int(fitins.config["server-round"]),
            "num_examples": int(fitres.num_examples),
        }
        name.with_suffix(".json").write_text(json.dumps(summary))
        np.savez(name.with_name(name.name + "-out.npz"), *parameters_to_ndarrays(fitres.parameters))
        np.savez(name.with_name(name.name + "-in.npz"), *parameters_to_ndarrays(fitins.parameters))
        return reply

    return record


def _load(directory: Path) -> list[dict]:
    records = []
    for summary in sorted(directory.glob("*.json")):
        record = json.loads(summary.read_text())
        for suffix, key in ((".npz", "masked"), ("-out.npz", "sent"), ("-in.npz", "received")):
            path = summary.with_name(summary.stem + suffix)
            if path.exists():
                with np.load(path) as data:
                    record[key] = [data[f"arr_{i}"] for i in range(len(data.files))]
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------------
# one SecAgg+ federation: 3 parties, 2 rounds
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secure_run(shared_data_dir, tmp_path_factory):
    pytest.importorskip("ray")
    import cloudpickle
    from flwr.simulation import run_simulation

    from fedgrow_hf.federated.secure_aggregation import make_secure_client_app
    from fedgrow_hf.federated.server_app import make_server_app

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    config = tiny_federation(shared_data_dir, rounds=2, phase2="none", secure_aggregation=dict(SECAGG))
    run_dir = tmp_path_factory.mktemp("secagg")
    reports = []
    client = make_secure_client_app(
        config, str(run_dir),
        mods=[make_outer_recorder(str(run_dir / "outer"))], inner_mods=[make_inner_recorder(str(run_dir / "inner"))],
    )
    run_simulation(
        server_app=make_server_app(config, run_dir, on_round=reports.append),  # dispatches to SecAgg+
        client_app=client,
        num_supernodes=config.num_parties,
        backend_config=SimulationEngine().ray_backend_config(),
    )
    from safetensors.torch import load_file

    return {
        "config": config, "dir": run_dir, "reports": reports,
        "final": load_file(str(run_dir / "global_operator.safetensors")),
        "outer": _load(run_dir / "outer"), "inner": _load(run_dir / "inner"),
    }


@pytest.mark.slow
def test_parties_send_only_masked_secagg_vectors(secure_run):
    from fedgrow_hf.federated.secure_aggregation import global_keys

    outer, inner = secure_run["outer"], secure_run["inner"]
    for party in range(3):
        stages = [r["stage"] for r in outer if r["party"] == party]
        assert sorted(stages) == sorted(STAGES * 2), stages  # every SecAgg+ stage, in both rounds
    assert len(inner) == 3 * 2
    for record in outer:
        assert all(n == 0 for n in record["reply_arrays"].values()), record  # no plain array leaves
    collected = [r for r in outer if r["stage"] == "collect_masked_vectors"]
    assert len(collected) == 6 and all("masked_params" in r["reply_configs"] for r in collected)
    assert {tuple(r["reply_configs"]) for r in outer if r["stage"] == "setup"} == {("pk1", "pk2")}
    n_keys = len(global_keys(secure_run["config"]))
    for record in collected:
        assert len(record["masked"]) == n_keys + 1  # + the masked weight factor SecAgg+ puts first
        assert all(m.dtype == np.int64 for m in record["masked"])
    # the plain updates (seen inside the party) appear nowhere in what the party sent
    payloads = [r["payload"] for r in outer]
    for plain in inner:
        assert len(plain["sent"]) == n_keys and all(a.dtype == np.float32 for a in plain["sent"])
        biggest = max(plain["sent"], key=lambda a: a.size)
        assert not any(biggest.tobytes()[:64].hex() in payload for payload in payloads)
        assert not any(
            np.allclose(m.astype(np.float64), a) for r in collected for m, a in zip(r["masked"][1:], plain["sent"])
        )


@pytest.mark.slow
def test_aggregate_is_the_weighted_mean_of_the_plain_updates(secure_run):
    from fedgrow_hf.experiment.parties import reference_global_stage
    from fedgrow_hf.federated.secure_aggregation import global_keys

    config, inner = secure_run["config"], secure_run["inner"]
    keys = global_keys(config)
    initial = reference_global_stage(config).state_dict()
    final = [secure_run["final"][k].numpy() for k in keys]
    received = {(r["round"], r["party"]): r["received"] for r in inner}
    for party in range(3):  # round 1 starts from the initial Global-LiGO
        assert all(np.array_equal(a, initial[k].numpy()) for k, a in zip(keys, received[(1, party)]))
    for server_round in (1, 2):
        updates = [r for r in inner if r["round"] == server_round]
        total = sum(r["num_examples"] for r in updates)
        expected = [sum(r["num_examples"] * r["sent"][i] for r in updates) / total for i in range(len(keys))]
        aggregate = final if server_round == 2 else received[(2, 0)]
        for key, got, want in zip(keys, aggregate, expected):
            np.testing.assert_allclose(got, want, atol=ATOL, err_msg=f"round {server_round} {key}")
        # the check means something: the parties' updates differ far more than the quantisation error
        spread = max(np.abs(a - b).max() for a, b in zip(updates[0]["sent"], updates[1]["sent"]))
        error = max(np.abs(got - want).max() for got, want in zip(aggregate, expected))
        assert error < ATOL < spread / 100, (error, spread)  # measured: error ~1e-5, spread ~2e-2
    assert all(np.isfinite(a).all() for a in final)
    assert any(not np.allclose(a, initial[k].numpy()) for k, a in zip(keys, final))


@pytest.mark.slow
def test_secure_run_writes_metrics_and_operator(secure_run):
    lines = [json.loads(line) for line in (secure_run["dir"] / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["round"], r["secure_aggregation"]) for r in lines] == [("operator", 1, True), ("operator", 2, True)]
    assert lines == secure_run["reports"]
    for line in lines:
        assert set(line["parties"]) == {"0", "1", "2"} and 0 <= line["accuracy"] <= 1
    assert all(torch.isfinite(v).all() for v in secure_run["final"].values())


# ----------------------------------------------------------------------------------------------------
# without a federation
# ----------------------------------------------------------------------------------------------------
def test_plain_client_app_hands_train_messages_to_secagg(shared_data_dir, tmp_path):
    """``make_client_app`` (what ``fedgrow simulate`` and ``flwr run`` use) answers SecAgg+'s setup stage."""
    from flwr.app import ConfigRecord, Context, Message, RecordDict

    from fedgrow_hf.federated.client_app import make_client_app
    from fedgrow_hf.federated.ledger import ledger_path
    from fedgrow_hf.federated.records import read_records

    config = tiny_federation(shared_data_dir, secure_aggregation=dict(SECAGG))
    setup = ConfigRecord({
        "stage": "setup", "sample_num": 3, "share_num": 3, "threshold": 2, "clipping_range": 8.0,
        "target_range": 4194304, "mod_range": 4294967296, "max_weight": 200.0,
    })
    context = Context(run_id=1, node_id=7, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    with flower_task_identity():
        msg = Message(RecordDict({"secaggplus_configs": setup}), dst_node_id=7, message_type="train")
        reply = make_client_app(config, str(tmp_path))(msg, context)
    assert not reply.has_error()
    assert set(reply.content.config_records["secaggplus_configs"]) == {"pk1", "pk2"}
    assert "secaggplus_state" in context.state.config_records  # the mod's state, kept by the party
    # the party's ledger counts SecAgg+'s byte strings: its two public keys left it, nothing came in
    keys = reply.content.config_records["secaggplus_configs"]
    assert [(line["direction"], line["records"]) for line in read_records(ledger_path(tmp_path, 0))] == [
        ("received", {}), ("sent", {"secaggplus_configs": len(keys["pk1"]) + len(keys["pk2"])})]


def test_secure_aggregation_config_is_checked(shared_data_dir):
    from fedgrow_hf.experiment.config import ConfigError

    assert not tiny_federation(shared_data_dir).secure_aggregation.enabled
    with pytest.raises(ConfigError, match="secure_aggregation.*dp_noise_multiplier"):
        tiny_federation(shared_data_dir, secure_aggregation={"enabled": True}, dp_noise_multiplier=0.5)
    with pytest.raises(ConfigError, match=r"unknown keys in \[federation.secure_aggregation\]: \['shares'\]"):
        tiny_federation(shared_data_dir, secure_aggregation={"enabled": True, "shares": 3})


def test_secagg_parties_disclose_coarse_or_no_metrics(shared_data_dir):
    from fedgrow_hf.federated.disclosure import disclosed_finetune_metrics, disclosed_metrics

    metrics = {"party": 2, "num-examples": 1234, "train_loss": 0.61234, "eval_loss_before": 0.7, "eval_loss": 0.59876,
               "accuracy": 0.83456, "precision_macro": 0.8}
    coarse = disclosed_metrics(metrics, "coarse")
    assert coarse["num-examples"] == 1200 and coarse["accuracy"] == 0.83 and coarse["party"] == 2
    assert set(coarse) == set(metrics)
    assert disclosed_metrics({**metrics, "num-examples": 3}, "coarse")["num-examples"] == 3
    assert disclosed_metrics(metrics, "none") == {}
    assert disclosed_metrics(metrics, "exact") == metrics
    # local phase 2: the same rule, curves point by point; "none" keeps only the party's id
    finetune = {**metrics, "curve_accuracy": [0.5123, 0.8349]}
    for mode, expected in (("exact", finetune), ("none", {"party": 2})):
        config = tiny_federation(shared_data_dir, phase2="local", secure_aggregation={"enabled": True, "party_metrics": mode})
        assert disclosed_finetune_metrics(finetune, config) == expected
    config = tiny_federation(shared_data_dir, phase2="local", secure_aggregation={"enabled": True})  # coarse
    assert disclosed_finetune_metrics(finetune, config)["curve_accuracy"] == [0.51, 0.83]
    # without secure aggregation, or when phase 2 sends whole models in clear, figures go as they are
    for config in (tiny_federation(shared_data_dir, phase2="local"),
                   tiny_federation(shared_data_dir, phase2="federated", secure_aggregation={"enabled": True})):
        assert disclosed_finetune_metrics(finetune, config) == finetune


def test_a_partys_local_phase2_reply_carries_only_its_id_under_party_metrics_none(shared_data_dir, tmp_path):
    """The real party app: it fine-tunes and keeps its model, and tells the server nothing but who it is."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

    from fedgrow_hf.experiment.parties import reference_global_stage
    from fedgrow_hf.experiment.training import final_model_dir
    from fedgrow_hf.federated.client_app import make_client_app
    from fedgrow_hf.federated.screening import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY

    config = tiny_federation(shared_data_dir, phase2="local",
                             secure_aggregation={**SECAGG, "party_metrics": "none"})
    settings = ConfigRecord({"mode": "local", "finetune-round": 1, "init": "grown"})
    content = RecordDict({ARRAYS_KEY: ArrayRecord(reference_global_stage(config).state_dict()), CONFIG_KEY: settings})
    context = Context(run_id=1, node_id=7, node_config={"partition-id": 1}, state=RecordDict(), run_config={})
    with flower_task_identity():
        reply = make_client_app(config, str(tmp_path))(
            Message(content, dst_node_id=7, message_type="train.finetune"), context)
    assert not reply.has_error(), reply.error
    assert dict(reply.content[METRICS_KEY]) == {"party": 1} and not reply.content.array_records
    assert (final_model_dir(tmp_path, 1) / "config.json").is_file()


def test_simulate_progress_reports_rounds_whose_parties_disclosed_no_figures():
    from fedgrow_hf.cli.simulate import _figures

    assert _figures({"loss": 0.61234, "accuracy": 0.8}) == "loss 0.6123 acc 0.800"
    assert _figures({"loss": None, "parties": {}}) == "no figures disclosed"  # party_metrics = "none"


def test_the_server_step_applies_to_the_unmasked_secagg_aggregate(shared_data_dir, tmp_path):
    """``server_learning_rate`` under SecAgg+: the new Global-LiGO is the current one plus the rate times the
    unmasked weighted mean's step from it, as without secure aggregation."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    from fedgrow_hf.federated.screening import PARTY_KEY
    from fedgrow_hf.federated.secure_aggregation import SecureFedAvg

    config = tiny_federation(shared_data_dir, rounds=1, phase2="none", secure_aggregation=dict(SECAGG),
                             server_learning_rate=2.0)
    strategy = SecureFedAvg(config, tmp_path, None)
    current = dict(strategy.global_state)
    steps = {0: (0.01, 40), 1: (0.04, 80)}  # party: (its step on every value, its example count)
    results = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(
        [(current[key] + step).numpy() for key in strategy.keys]), examples, {PARTY_KEY: party}))
        for party, (step, examples) in steps.items()]
    parameters, _ = strategy.aggregate_fit(1, results, [])
    assert parameters is not None
    mean = (0.01 * 40 + 0.04 * 80) / 120
    for key in strategy.keys:
        torch.testing.assert_close(strategy.global_state[key], current[key] + 2.0 * mean)
        assert strategy.global_state[key].dtype == current[key].dtype
