"""The server against hostile and broken parties, driven with crafted replies (no training, no Ray).

A scripted grid stands in for Flower's: three nodes answer each round; honest ones send the Global-LiGO
they received plus a small party-specific step and truthful metrics, a hostile one sends what the test
crafts. Every case must end in a named rejection of that reply while the round goes on with the others,
or a clean, named stop, with the checkpoint on disk still valid.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.federated.conftest import flower_task_identity, tiny_federation

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402

from fedgrow_hf.experiment.parties import reference_global_stage, reference_target_state  # noqa: E402
from fedgrow_hf.experiment.training import finetune_eval_steps  # noqa: E402
from fedgrow_hf.federated.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from fedgrow_hf.federated.clipping import state_norm  # noqa: E402
from fedgrow_hf.federated.disclosure import disclosed_finetune_metrics  # noqa: E402
from fedgrow_hf.federated.phases import FINAL_OPERATOR, run_phase2  # noqa: E402
from fedgrow_hf.federated.screening import (  # noqa: E402
    ARRAYS_KEY,
    CONFIG_KEY,
    FINETUNE_CURVE,
    METRICS_KEY,
    PARTY_KEY,
    WEIGHT_KEY,
)
from fedgrow_hf.federated.server_app import FederationAborted, run_federation  # noqa: E402
from fedgrow_hf.federated.strategy import MEDIAN_AGGREGATE  # noqa: E402

NODES = (101, 202, 303)  # node id of party 0, 1, 2
EXAMPLES = (40, 60, 80)
Reply = Callable[[Message, int], Message]


def honest_content(message: Message, party: int) -> RecordDict:
    """What an honest party sends back: the received arrays plus a small step, and truthful metrics."""
    state = message.content[ARRAYS_KEY].to_torch_state_dict()
    metrics = {PARTY_KEY: party, WEIGHT_KEY: EXAMPLES[party], "train_loss": 0.6, "eval_loss": 0.6,
               "accuracy": 0.7, "precision_macro": 0.6}
    if message.metadata.message_type == "train":
        metrics["eval_loss_before"] = 0.7
        updated = {key: value + 0.01 * (party + 1) for key, value in state.items()}
        return RecordDict({ARRAYS_KEY: ArrayRecord(updated), METRICS_KEY: MetricRecord(metrics)})
    if message.content[CONFIG_KEY]["mode"] == "local":  # metrics only, with the held-out curves
        curves = {name: [0.7] * len(LOCAL_CURVE_STEPS) for name in FINETUNE_CURVE}
        return RecordDict({METRICS_KEY: MetricRecord({**metrics, **curves})})
    metrics["eval_loss_before"] = 0.7  # a federated phase-2 round scores the average it received, as phase 1 does
    return RecordDict({ARRAYS_KEY: ArrayRecord(phase2_model(message, party)), METRICS_KEY: MetricRecord(metrics)})


def phase2_model(message: Message, party: int) -> dict[str, torch.Tensor]:
    """A party's fine-tuned grown model in federated phase 2: the target's shapes, party-specific values."""
    return {key: torch.full(tuple(ref.shape), 0.01 * (party + 1), dtype=ref.dtype) for key, ref in REFERENCE_TARGET.items()}


class ScriptedGrid(Grid):
    """A Grid whose nodes answer at once: honestly, or with ``hostile[party](message, party)``."""

    def __init__(self, hostile: dict[int, Reply] | None = None, nodes: Iterable[int] = NODES) -> None:
        self.hostile, self.nodes, self.sent = hostile or {}, list(nodes), []

    def set_run(self, run):  # noqa: D102 - not used by the server
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in sorted(messages, key=lambda m: m.metadata.dst_node_id):  # party 0 answers first
            party = NODES.index(message.metadata.dst_node_id)
            self.sent.append((party, message))
            reply = self.hostile.get(party)
            replies.append(reply(message, party) if reply else Message(honest_content(message, party), reply_to=message))
        return replies


def reply_with(change: Callable[[RecordDict], None]) -> Reply:
    """A hostile party: the honest reply, then ``change`` applied to its records."""
    def reply(message: Message, party: int) -> Message:
        content = honest_content(message, party)
        change(content)
        return Message(content, reply_to=message)
    return reply


def with_metric(name: str, value: object) -> Reply:
    def change(content: RecordDict) -> None:
        metrics = dict(content[METRICS_KEY])
        metrics[name] = value
        content[METRICS_KEY] = MetricRecord(metrics)
    return reply_with(change)


def with_array(make: Callable[[Array], Array]) -> Reply:
    """The honest reply with its first array replaced by ``make(original)``."""
    def change(content: RecordDict) -> None:
        record = content[ARRAYS_KEY]
        key = sorted(record.keys())[0]
        record[key] = make(record[key])
    return reply_with(change)


def with_values(value: float) -> Reply:
    def change(content: RecordDict) -> None:
        state = content[ARRAYS_KEY].to_torch_state_dict()
        content[ARRAYS_KEY] = ArrayRecord({key: torch.full_like(v, value) for key, v in state.items()})
    return reply_with(change)


def raw_array(original: Array, data: bytes) -> Array:
    return Array(dtype=original.dtype, shape=tuple(original.shape), stype="numpy.ndarray", data=data)


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """An ``.npy`` header declaring ``shape`` in float32, followed by a few bytes of data."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return stream.getvalue() + b"\0" * 64


def npz_bytes(original: Array) -> bytes:
    stream = io.BytesIO()
    np.savez_compressed(stream, a=original.numpy())
    return stream.getvalue()


def bad_zip(original: Array) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        archive.writestr("a.npy", b"not an array")
    return stream.getvalue()[:-10]


@pytest.fixture(scope="module", autouse=True)
def server_identity():
    """What Flower's ServerApp runtime sets before ``main`` runs: messages read the run id from it."""
    with flower_task_identity():
        yield


@pytest.fixture(scope="module")
def config(shared_data_dir):
    """Without clipping (``update_clip_factor=0``), so that the screen's cases can expect the honest parties'
    exact FedAvg; the clipping has its own tests below (``test_hostile_ratchet_*``)."""
    return tiny_federation(shared_data_dir, rounds=2, phase2="none", round_retries=0, round_timeout=2,
                           update_clip_factor=0.0)


@pytest.fixture(scope="module")
def reference(config):
    return reference_global_stage(config).state_dict()


REFERENCE_TARGET: dict[str, torch.Tensor] = {}
LOCAL_CURVE_STEPS: list[int] = []  # where an honest party's local phase-2 curve is measured


def run(config, tmp_path, grid, **federation):
    """Run the federation on ``grid`` with overrides; returns the metrics.jsonl records."""
    for name, value in federation.items():
        setattr(config.federation, name, value)
    config.validate()
    run_federation(grid, config, tmp_path)
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def expected_mean(reference, parties: tuple[int, ...], rounds: int) -> dict[str, torch.Tensor]:
    """The example-weighted FedAvg of honest parties ``parties`` after ``rounds`` rounds."""
    step = sum(0.01 * (p + 1) * EXAMPLES[p] for p in parties) / sum(EXAMPLES[p] for p in parties)
    return {key: value + rounds * step for key, value in reference.items()}


def assert_dropped_each_round(records, party: int, reason: str) -> None:
    for record in records:
        assert set(record["parties"]) == {"0", "1", "2"} - {str(party)}
        (dropped,) = record["dropped"]
        # a reply whose metrics are malformed never established which party its node is
        assert dropped["node"] == NODES[party] and dropped["party"] in (party, None), dropped
        assert reason in dropped["reason"], dropped


@pytest.fixture
def fresh(config):
    """The module's config with the defaults of the hostile-input settings restored after each test."""
    saved = {name: getattr(config.federation, name) for name in
             ("max_num_examples", "update_norm_bound", "update_clip_factor", "aggregator", "phase2", "finetune_rounds", "rounds",
              "min_train_nodes", "round_timeout", "finetune_steps", "server_learning_rate")}
    yield config
    for name, value in saved.items():
        setattr(config.federation, name, value)


@pytest.mark.parametrize("rate", [2.0, 0.5])
def test_the_server_step_scales_each_rounds_aggregate_update(fresh, reference, tmp_path, rate):
    """``server_learning_rate``: every round's new Global-LiGO is the state sent plus ``rate`` times the
    honest parties' FedAvg step, so two rounds move it ``2 x rate`` steps; the checkpoint and the final
    operator file hold it."""
    run(fresh, tmp_path, ScriptedGrid(), server_learning_rate=rate)
    final = load_checkpoint(tmp_path).global_state
    saved = load_file(tmp_path / FINAL_OPERATOR)
    for key, mean in expected_mean(reference, (0, 1, 2), 2).items():  # two plain FedAvg steps
        torch.testing.assert_close(final[key], reference[key] + rate * (mean - reference[key]))
        torch.testing.assert_close(saved[key], final[key])
        assert final[key].dtype == reference[key].dtype


def test_the_server_step_moves_along_the_screened_aggregate_only(fresh, reference, tmp_path):
    """A dropped reply stays out of the step: the honest parties' mean, taken twice as far."""
    records = run(fresh, tmp_path, ScriptedGrid({2: with_values(float("nan"))}), server_learning_rate=2.0)
    assert_dropped_each_round(records, 2, "non-finite")
    final = load_checkpoint(tmp_path).global_state
    for key, mean in expected_mean(reference, (0, 1), 2).items():
        torch.testing.assert_close(final[key], reference[key] + 2 * (mean - reference[key]))


def test_a_server_step_of_one_is_the_aggregate_itself(reference):
    from fedgrow_hf.federated.strategy import server_step

    aggregate = {key: value + 1 for key, value in reference.items()}
    assert server_step(reference, aggregate, 1.0) is aggregate


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda a: raw_array(a, b""), "not an .npy array"),
        (lambda a: raw_array(a, npz_bytes(a)), "not an .npy array"),
        (lambda a: raw_array(a, bad_zip(a)), "not an .npy array"),
        (lambda a: raw_array(a, npy_header_only((10**13,))), "has shape (10000000000000,)"),
        (lambda a: raw_array(a, a.data[:-4]), "bytes of data"),
        (lambda a: Array(dtype=a.dtype, shape=tuple(a.shape), stype="torch.pickle", data=a.data), "serialisation"),
    ],
    ids=["empty-bytes", "npz", "bad-zip", "header-shape-1e13", "truncated", "foreign-serialisation"],
)
def test_hostile_undecodable_array_is_dropped_and_the_round_goes_on(fresh, reference, tmp_path, make, reason):
    records = run(fresh, tmp_path, ScriptedGrid({2: with_array(make)}))
    assert_dropped_each_round(records, 2, reason)
    final = load_checkpoint(tmp_path).global_state
    for key, value in expected_mean(reference, (0, 1), 2).items():
        torch.testing.assert_close(final[key], value)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (with_metric("extra", 1.0), "unexpected ['extra']"),
        (reply_with(lambda c: c[METRICS_KEY].pop("train_loss")), "missing ['train_loss']"),
        (with_metric(WEIGHT_KEY, [1, 2]), "num-examples=[1, 2]"),
        (with_metric("accuracy", float("nan")), "'accuracy'=nan"),
        (reply_with(lambda c: c.__setitem__("more", ArrayRecord())), "records"),
        (reply_with(lambda c: c.__setitem__("more", MetricRecord({"x": 1.0}))), "records"),
        (reply_with(lambda c: c.__setitem__("more", ConfigRecord({"x": 1}))), "records"),
    ],
    ids=["extra-metric", "missing-train-loss", "weight-as-list", "nan-metric", "extra-arrayrecord",
         "extra-metricrecord", "extra-configrecord"],
)
def test_hostile_malformed_records_are_dropped_not_inconsistent(fresh, tmp_path, reply, reason):
    records = run(fresh, tmp_path, ScriptedGrid({1: reply}))
    assert_dropped_each_round(records, 1, reason)


@pytest.mark.parametrize("weight", [10**12, -150, 0, float("nan"), float("inf"), 1.5],
                         ids=["1e12", "negative", "zero", "nan", "inf", "fraction"])
def test_hostile_example_count_is_bounded(fresh, reference, tmp_path, weight):
    records = run(fresh, tmp_path, ScriptedGrid({0: with_metric(WEIGHT_KEY, weight)}), max_num_examples=10_000)
    assert_dropped_each_round(records, 0, WEIGHT_KEY)
    final = load_checkpoint(tmp_path).global_state
    assert all(torch.isfinite(v).all() for v in final.values())
    for key, value in expected_mean(reference, (1, 2), 2).items():
        torch.testing.assert_close(final[key], value)


@pytest.mark.parametrize("value", [1e30, 3e38, -1e6], ids=["1e30", "3e38", "-1e6"])
def test_hostile_magnitudes_beyond_the_norm_bound_are_dropped(fresh, reference, tmp_path, value):
    records = run(fresh, tmp_path, ScriptedGrid({1: with_values(value)}))
    assert_dropped_each_round(records, 1, "beyond the bound")
    final = load_checkpoint(tmp_path).global_state
    for key, expected in expected_mean(reference, (0, 2), 2).items():
        torch.testing.assert_close(final[key], expected)


def test_hostile_magnitudes_under_fedmedian_leave_the_honest_median(fresh, reference, tmp_path):
    run(fresh, tmp_path, ScriptedGrid({1: with_values(1e30)}), update_norm_bound=0.0, aggregator="fedmedian")
    final = load_checkpoint(tmp_path).global_state
    # the coordinate-wise median of {honest 0, 1e30, honest 2} is party 2's value, round after round
    for key, value in reference.items():
        torch.testing.assert_close(final[key], value + 2 * 0.03)


def test_hostile_non_finite_aggregate_or_checkpoint_is_refused(fresh, reference, tmp_path):
    """An aggregate is checked before it is checkpointed or sent, and a checkpoint before it is resumed."""
    from fedgrow_hf.federated.checkpoint import ServerCheckpoint, save_checkpoint
    from fedgrow_hf.federated.strategy import aggregate_problem

    key = sorted(reference)[0]
    poisoned = {**reference, key: torch.full_like(reference[key], float("inf"))}
    assert f"aggregate key {key!r} has non-finite values" == aggregate_problem(poisoned, reference)
    run(fresh, tmp_path, ScriptedGrid(), rounds=1)
    intact = load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, ServerCheckpoint(1, poisoned, intact.strategy_state, run=intact.run))
    with pytest.raises(CheckpointError, match="round 1 .* non-finite"):
        run_federation(ScriptedGrid(), fresh, tmp_path, resume=True)


@pytest.mark.parametrize(("party", "reason"), [(0, "belongs to node 101"), (1.5, "not a party id"), (7, "not a party id")],
                         ids=["duplicate", "fractional", "out-of-range"])
def test_hostile_party_identity_is_bound_to_the_node(fresh, tmp_path, party, reason):
    records = run(fresh, tmp_path, ScriptedGrid({2: with_metric(PARTY_KEY, party)}))
    for record in records:
        assert set(record["parties"]) == {"0", "1"}
        assert record["parties"]["0"][WEIGHT_KEY] == EXAMPLES[0]  # party 0's report is not overwritten
        assert reason in record["dropped"][0]["reason"]


def test_hostile_node_switching_party_between_rounds_is_dropped(fresh, tmp_path):
    def switch(message: Message, party: int) -> Message:
        claimed = party if int(message.content["config"]["server-round"]) == 1 else 0
        return with_metric(PARTY_KEY, claimed)(message, party)

    records = run(fresh, tmp_path, ScriptedGrid({2: switch}))
    assert set(records[0]["parties"]) == {"0", "1", "2"}
    assert "reported party 2 before, now 0" in records[1]["dropped"][0]["reason"]


def test_hostile_missing_nodes_bound_the_wait_then_go_on_or_stop(fresh, tmp_path):
    records = run(fresh, tmp_path / "two", ScriptedGrid(nodes=NODES[:2]), round_timeout=1)
    assert [set(r["parties"]) for r in records] == [{"0", "1"}, {"0", "1"}]
    with pytest.raises(FederationAborted, match="1 of 3 parties connected"):
        run(fresh, tmp_path / "one", ScriptedGrid(nodes=NODES[:1]), round_timeout=1)


def test_hostile_phase2_federated_replies_are_screened_and_checkpointed(fresh, tmp_path):
    REFERENCE_TARGET.update({k: torch.empty(tuple(v.shape), dtype=v.dtype) for k, v in reference_target_state(fresh).items()})

    def nan_model(message: Message, party: int) -> Message:
        if message.metadata.message_type == "train":
            return Message(honest_content(message, party), reply_to=message)
        content = honest_content(message, party)
        state = content[ARRAYS_KEY].to_torch_state_dict()
        content[ARRAYS_KEY] = ArrayRecord({k: torch.full_like(v, float("nan")) for k, v in state.items()})
        return Message(content, reply_to=message)

    def foreign_key(message: Message, party: int) -> Message:
        content = honest_content(message, party)
        if message.metadata.message_type != "train":
            content[ARRAYS_KEY]["lm_head.weight"] = Array.from_numpy_ndarray(np.zeros(3, np.float32))
        return Message(content, reply_to=message)

    records = run(fresh, tmp_path, ScriptedGrid({1: nan_model, 2: foreign_key}), rounds=1, phase2="federated",
                  finetune_rounds=1, min_train_nodes=1)
    phase2 = [r for r in records if r["phase"] == "finetune-federated"]
    assert len(phase2) == 1 and set(phase2[0]["parties"]) == {"0"}
    reasons = {d["party"]: d["reason"] for d in phase2[0]["dropped"]}  # the round's report names both
    assert set(reasons) == {1, 2} and "non-finite" in reasons[1] and "lm_head.weight" in reasons[2], reasons
    model = load_checkpoint(tmp_path, "finetune").global_state
    assert set(model) == set(REFERENCE_TARGET) and all(torch.isfinite(v).all() for v in model.values())
    torch.testing.assert_close(model[next(iter(model))], torch.full_like(model[next(iter(model))], 0.01))
    assert (tmp_path / "grown_model_fedavg.safetensors").is_file()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda curve: None, "missing ['curve_accuracy']"),
        (lambda curve: curve[:1], "not a list of 3 values (got 1)"),
        (lambda curve: curve * 100, "not a list of 3 values (got 300)"),
        (lambda curve: 0.7, "not a list of 3 values (got float)"),
        (lambda curve: [0.7, float("nan"), 0.7], "not a finite number"),
    ],
    ids=["missing", "short", "oversized", "scalar", "nan"],
)
def test_hostile_local_phase2_curves_are_screened(fresh, tmp_path, change, reason):
    """A local phase-2 reply carries held-out curves of exactly the server's evaluation steps."""
    fresh.federation.finetune_steps = 12
    LOCAL_CURVE_STEPS[:] = finetune_eval_steps(fresh)
    assert LOCAL_CURVE_STEPS == [5, 10, 12]

    def bad_curve(content: RecordDict) -> None:
        metrics = dict(content[METRICS_KEY])
        changed = change(metrics.pop("curve_accuracy"))
        content[METRICS_KEY] = MetricRecord(metrics if changed is None else {**metrics, "curve_accuracy": changed})

    def hostile(message: Message, party: int) -> Message:
        return (reply_with(bad_curve) if message.metadata.message_type != "train" else reply_with(lambda c: None))(
            message, party)

    records = run(fresh, tmp_path, ScriptedGrid({1: hostile}), rounds=1, phase2="local")
    (phase2,) = [r for r in records if r["phase"] == "finetune-local"]
    assert set(phase2["parties"]) == {"0", "2"} and reason in phase2["dropped"][0]["reason"]
    for metrics in phase2["parties"].values():
        assert metrics["curve"] == [{"steps": step, "accuracy": 0.7, "precision_macro": 0.7, "eval_loss": 0.7}
                                    for step in LOCAL_CURVE_STEPS]


@pytest.mark.parametrize("mode", ["coarse", "none"])
def test_local_phase2_under_secure_aggregation_takes_only_what_party_metrics_discloses(shared_data_dir, tmp_path, mode):
    """Parties disclose what ``party_metrics`` allows. Under ``"none"`` a reply with figures does not fit the
    screen and is dropped (party 2); under ``"coarse"`` the server cannot tell coarse figures from exact ones."""
    config = tiny_federation(shared_data_dir, rounds=1, phase2="local", finetune_steps=12, round_timeout=2,
                             secure_aggregation={"enabled": True, "party_metrics": mode})
    LOCAL_CURVE_STEPS[:] = finetune_eval_steps(config)
    exact = {PARTY_KEY: 0, WEIGHT_KEY: 1234, "train_loss": 0.61234, "eval_loss": 0.59876, "accuracy": 0.83456,
             "precision_macro": 0.8, **{name: [0.7123, 0.75, 0.8049] for name in FINETUNE_CURVE}}

    def disclosing(message: Message, party: int) -> Message:
        metrics = disclosed_finetune_metrics({**exact, PARTY_KEY: party}, config)
        return Message(RecordDict({METRICS_KEY: MetricRecord(metrics)}), reply_to=message)

    def leaking(message: Message, party: int) -> Message:
        return Message(RecordDict({METRICS_KEY: MetricRecord({**exact, PARTY_KEY: party})}), reply_to=message)

    arrays = ArrayRecord(reference_global_stage(config).state_dict())
    reports = []
    grid = ScriptedGrid({0: disclosing, 1: disclosing, 2: leaking if mode == "none" else disclosing})
    run_phase2(grid, config, tmp_path, arrays, reports.append)
    (report,) = reports
    assert report["party_metrics"] == mode
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == report
    party = report["parties"]["0"]
    if mode == "none":
        assert set(report["parties"]) == {"0", "1"} and report["dropped"][0]["node"] == NODES[2]
        assert "metrics differ: unexpected" in report["dropped"][0]["reason"]
        assert set(party) == {PARTY_KEY, "bytes_up", "bytes_down"}
        assert "accuracy" not in report and report["loss"] is None
    else:
        assert set(report["parties"]) == {"0", "1", "2"} and not report["dropped"]
        assert party[WEIGHT_KEY] == 1200 and party["accuracy"] == 0.83 and report["accuracy"] == 0.83
        assert [point["accuracy"] for point in party["curve"]] == [0.71, 0.75, 0.8]
        assert [point["steps"] for point in party["curve"]] == LOCAL_CURVE_STEPS


def test_hostile_checkpoint_files_and_resume_config_are_checked(fresh, tmp_path):
    run(fresh, tmp_path, ScriptedGrid())
    state_file = tmp_path / "checkpoint" / "state.json"
    intact = state_file.read_text()

    other_seed = tiny_federation(Path(fresh.data.source).parent, phase2="none", rounds=3)
    other_seed.seed = 5
    with pytest.raises(CheckpointError, match=r"config differs .* \['federation', 'seed'\]"):
        run_federation(ScriptedGrid(), other_seed, tmp_path, resume=True)

    state_file.write_text(intact[: len(intact) // 2])
    with pytest.raises(CheckpointError, match="state.json is broken"):
        load_checkpoint(tmp_path)
    state_file.write_text(json.dumps({**json.loads(intact), "operator": "../../etc/passwd"}))
    with pytest.raises(CheckpointError, match="not a checkpoint file inside"):
        load_checkpoint(tmp_path)


def test_screened_strategy_serves_flowers_own_start_loop(config, reference):
    """The screen is a Strategy wrapper: Flower's ``Strategy.start`` runs it, a hostile reply is dropped
    (named in ``last``), and the result is the honest parties' FedAvg."""
    from fedgrow_hf.federated.screening import OPERATOR_METRICS, ReplyScreen, payload_bytes
    from fedgrow_hf.federated.strategy import ScreenedStrategy, build_strategy

    screen = ReplyScreen(reference, OPERATOR_METRICS, config.num_parties, payload_bytes(ArrayRecord(reference)),
                         config.federation.max_num_examples, config.federation.update_norm_bound)
    strategy = ScreenedStrategy(build_strategy(config), screen, min_valid=2)
    grid = ScriptedGrid({2: with_values(float("nan"))})
    result = strategy.start(grid, ArrayRecord(reference), num_rounds=2, timeout=5)
    assert [(d.node_id, d.party) for d in strategy.last.dropped] == [(NODES[2], 2)]
    assert "non-finite" in strategy.last.dropped[0].reason
    final = result.arrays.to_torch_state_dict()
    for key, value in expected_mean(reference, (0, 1), 2).items():
        torch.testing.assert_close(final[key], value)
        assert final[key].dtype == reference[key].dtype


def test_screened_strategy_returns_nothing_below_min_valid(config, reference):
    from fedgrow_hf.federated.screening import OPERATOR_METRICS, ReplyScreen, payload_bytes
    from fedgrow_hf.federated.strategy import ScreenedStrategy, build_strategy

    screen = ReplyScreen(reference, OPERATOR_METRICS, config.num_parties, payload_bytes(ArrayRecord(reference)),
                         config.federation.max_num_examples, config.federation.update_norm_bound)
    strategy = ScreenedStrategy(build_strategy(config), screen, min_valid=3)
    grid = ScriptedGrid({1: with_metric("accuracy", float("nan"))})
    messages = list(strategy.configure_train(1, ArrayRecord(reference), ConfigRecord({"local-steps": 1}), grid))
    assert strategy.aggregate_train(1, grid.send_and_receive(messages)) == (None, None)
    assert strategy.last.problem == "2 valid updates < min_train_nodes=3" and not strategy.last.aggregate_rejected
    assert len(strategy.last.valid) == 2


def ratchet(examples: int | None = None) -> Reply:
    """The update just inside a bound measured from the current state ``c`` (issue 26):
    ``c x (1 + 0.99 x update_norm_bound x max(1, |c|) / |c|)``, optionally claiming ``examples`` examples."""
    def reply(message: Message, party: int) -> Message:
        content = honest_content(message, party)
        state = message.content[ARRAYS_KEY].to_torch_state_dict()
        size = state_norm(state)
        scale = 1 + 0.99 * 10.0 * max(1.0, size) / size
        content[ARRAYS_KEY] = ArrayRecord({key: value * scale for key, value in state.items()})
        if examples is not None:
            metrics = dict(content[METRICS_KEY])
            metrics[WEIGHT_KEY] = examples
            content[METRICS_KEY] = MetricRecord(metrics)
        return Message(content, reply_to=message)
    return reply


@pytest.mark.parametrize("examples", [None, 1_000_000], ids=["true-count", "claims-max-count"])
def test_hostile_ratchet_is_bounded_by_median_clipping(fresh, reference, tmp_path, examples):
    """40 rounds of the ratchet from party 0: without clipping the Global-LiGO grows geometrically (claiming
    the largest count, it overflows float32 and the run stops); with the default clipping no reply is dropped
    and its norm stays within 2x of the honest-only run's."""
    try:
        run(fresh, tmp_path / "unclipped", ScriptedGrid({0: ratchet(examples)}), rounds=40, update_clip_factor=0.0)
        unclipped = state_norm(load_checkpoint(tmp_path / "unclipped").global_state)
    except FederationAborted as stopped:
        assert "fewer than min_train_nodes" in str(stopped) and examples
        unclipped = math.inf
    honest_records = run(fresh, tmp_path / "honest", ScriptedGrid(), rounds=40, update_clip_factor=1.0)
    records = run(fresh, tmp_path / "clipped", ScriptedGrid({0: ratchet(examples)}), rounds=40, update_clip_factor=1.0)
    assert len(records) == 40 and all(set(r["parties"]) == {"0", "1", "2"} and not r["dropped"] for r in records)
    assert all(r["clipped"]["0"]["distance"] > r["clipped"]["0"]["distance_bound"] for r in records)
    if examples:
        assert all(r["clipped"]["0"]["num_examples"] == examples for r in records)
        # capped at the median of the three counts (1e6, 60, 80)
        assert all(r["clipped"]["0"]["num_examples_bound"] == EXAMPLES[2] for r in records)
    honest = state_norm(load_checkpoint(tmp_path / "honest").global_state)
    attacked = state_norm(load_checkpoint(tmp_path / "clipped").global_state)
    assert len(honest_records) == 40 and attacked <= 2 * honest, (attacked, honest)
    assert unclipped > 1e10 * honest


@pytest.mark.parametrize("norm_bound", [10.0, 0.0], ids=["norm-bound", "clipping-only"])
@pytest.mark.parametrize("value", [1e30, 3e38], ids=["1e30", "3e38"])
def test_hostile_phase2_first_round_is_bounded_by_the_replies_median(fresh, tmp_path, value, norm_bound):
    """Federated phase 2's round 1 has no state the parties started from (each merges its own model): the
    round's aggregate is the replies' coordinate-wise median. 1e30s are beyond the norm bound measured from it
    (dropped) or, without that bound, clipped to the replies' median norm and outvoted coordinate by coordinate;
    either way round 2 starts from an honest-sized model."""
    REFERENCE_TARGET.update({k: torch.empty(tuple(v.shape), dtype=v.dtype) for k, v in reference_target_state(fresh).items()})

    def huge_model(message: Message, party: int) -> Message:
        if message.metadata.message_type == "train":
            return Message(honest_content(message, party), reply_to=message)
        return with_values(value)(message, party)

    records = run(fresh, tmp_path, ScriptedGrid({2: huge_model}), rounds=1, phase2="federated", finetune_rounds=2,
                  update_norm_bound=norm_bound, update_clip_factor=1.0)
    phase2 = [r for r in records if r["phase"] == "finetune-federated"]
    assert [r["round"] for r in phase2] == [1, 2]
    if norm_bound:
        assert set(phase2[0]["parties"]) == {"0", "1"} and "beyond the bound" in phase2[0]["dropped"][0]["reason"]
    else:
        assert set(phase2[0]["parties"]) == {"0", "1", "2"} and not phase2[0]["dropped"] and "2" in phase2[0]["clipped"]
    assert phase2[0]["aggregate"] == MEDIAN_AGGREGATE and "aggregate" not in phase2[1]
    model = load_checkpoint(tmp_path, "finetune").global_state
    # every honest model is 0.01 or 0.02 everywhere: so is the median, and round 2's clipped average
    assert all(float(v.abs().max()) <= 0.05 for v in model.values() if v.is_floating_point())


def test_hostile_identity_is_kept_across_phases_and_resume(fresh, tmp_path):
    """The node bound to party 2 in phase 1 cannot claim party 0 in phase 2, nor after a resume; the genuine
    party 0's figures stay its own. Bindings are in the checkpoint."""
    REFERENCE_TARGET.update({k: torch.empty(tuple(v.shape), dtype=v.dtype) for k, v in reference_target_state(fresh).items()})

    def impostor(message: Message, party: int) -> Message:
        claimed = party if message.metadata.message_type == "train" else 0
        return with_metric(PARTY_KEY, claimed)(message, party)

    records = run(fresh, tmp_path / "phases", ScriptedGrid({2: impostor}), rounds=1, phase2="federated",
                  finetune_rounds=1, min_train_nodes=1)
    (phase2,) = [r for r in records if r["phase"] == "finetune-federated"]
    assert set(phase2["parties"]) == {"0", "1"} and phase2["parties"]["0"][WEIGHT_KEY] == EXAMPLES[0]
    assert phase2["dropped"][0]["node"] == NODES[2] and "reported party 2 before, now 0" in phase2["dropped"][0]["reason"]
    assert load_checkpoint(tmp_path / "phases", "finetune").strategy_state["parties"] == {
        str(node): party for party, node in enumerate(NODES)}

    def down_in_round_2(message: Message, party: int) -> Message:  # every party: the server stops after round 1
        broken = int(message.content[CONFIG_KEY]["server-round"]) == 2
        return with_metric("accuracy", float("nan") if broken else 0.7)(message, party)

    with pytest.raises(FederationAborted, match="round 2"):
        run(fresh, tmp_path / "resumed", ScriptedGrid(dict.fromkeys(range(3), down_in_round_2)), rounds=2,
            phase2="none")
    assert load_checkpoint(tmp_path / "resumed").strategy_state["parties"] == {
        str(node): party for party, node in enumerate(NODES)}
    run_federation(ScriptedGrid({2: with_metric(PARTY_KEY, 0)}), fresh, tmp_path / "resumed", resume=True)
    (resumed,) = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()][1:]
    assert set(resumed["parties"]) == {"0", "1"} and resumed["parties"]["0"][WEIGHT_KEY] == EXAMPLES[0]
    assert "reported party 2 before, now 0" in resumed["dropped"][0]["reason"]


def strict_records(path: Path) -> list[dict]:
    """Every line of ``metrics.jsonl``, parsed as strict JSON (no NaN or Infinity); fails on a torn line."""
    def refuse(constant: str) -> None:
        raise ValueError(f"non-strict JSON constant {constant}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().split("\n")[:-1]]


def stop_in_round(stopped: int) -> Reply:
    """A party that answers honestly until round ``stopped``, then fails (every party: the server stops)."""
    def reply(message: Message, party: int) -> Message:
        broken = int(message.content[CONFIG_KEY]["server-round"]) == stopped
        return with_metric("accuracy", float("nan") if broken else 0.7)(message, party)
    return reply


def test_fault_metrics_file_is_cut_back_on_resume(fresh, tmp_path):
    """A kill after a round's record but before its checkpoint, and a kill mid-append (a torn line): the
    resumed run's metrics.jsonl holds every round exactly once, in whole strict-JSON lines."""
    with pytest.raises(FederationAborted, match="round 3"):
        run(fresh, tmp_path, ScriptedGrid(dict.fromkeys(range(3), stop_in_round(3))), rounds=3, phase2="local")
    metrics = tmp_path / "metrics.jsonl"
    (first, second) = strict_records(metrics)
    with open(metrics, "a") as handle:  # round 3 recorded, never checkpointed; then a torn append
        handle.write(json.dumps({**second, "round": 3}) + "\n" + json.dumps(second)[:40])
    LOCAL_CURVE_STEPS[:] = finetune_eval_steps(fresh)
    for _ in range(2):  # the second resume finds a finished run: nothing is run or recorded again
        run_federation(ScriptedGrid(), fresh, tmp_path, resume=True)
        records = strict_records(metrics)
        assert [(r["phase"], r["round"]) for r in records] == [("operator", 1), ("operator", 2), ("operator", 3),
                                                               ("finetune-local", 1)]
        assert records[:2] == [first, second]


def test_fault_append_after_a_torn_line_starts_a_new_line(tmp_path):
    from fedgrow_hf.federated.records import append_record, read_records

    path = tmp_path / "metrics.jsonl"
    append_record(path, {"phase": "operator", "round": 1, "loss": float("nan")})
    path.write_bytes(path.read_bytes() + b'{"phase": "operator", "ro')
    assert read_records(path) == [{"phase": "operator", "round": 1, "loss": None}]  # NaN is written as null
    append_record(path, {"phase": "operator", "round": 2})
    assert [r["round"] for r in strict_records(path)] == [1, 2]


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [("accuracy", 1.7e308, "'accuracy'=1.7e+308 is not a finite number in [0, 1]"),
     ("eval_loss", -1.7e308, "'eval_loss'=-1.7e+308 is not a finite number in [0, 1e+06]"),
     ("precision_macro", -0.5, "'precision_macro'=-0.5 is not a finite number in [0, 1]")],
    ids=["accuracy-1.7e308", "loss-minus-1.7e308", "negative-precision"],
)
def test_hostile_metrics_out_of_range_are_dropped(fresh, tmp_path, name, value, reason):
    records = run(fresh, tmp_path, ScriptedGrid({1: with_metric(name, value)}))
    assert_dropped_each_round(records, 1, reason)
    strict_records(tmp_path / "metrics.jsonl")


def test_hostile_error_reasons_are_one_short_line(fresh, tmp_path):
    """An 8 MB error reason with terminal escapes and newlines reaches metrics.jsonl as 200 printable chars."""
    from flwr.app import Error

    reason = "\x1b[31m/home/party/private/data.csv line 3\n" + "x" * 8_000_000

    def failing(message: Message, party: int) -> Message:
        return Message(Error(code=0, reason=reason), reply_to=message)

    records = run(fresh, tmp_path, ScriptedGrid({2: failing}))
    for record in records:
        text = record["dropped"][0]["reason"]
        assert text.startswith("party failed: /home/party/private/data.csv line 3 xxx") and len(text) == 200
        assert text.isprintable() and text.endswith("...")
    assert (tmp_path / "metrics.jsonl").stat().st_size < 10_000


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda state: {**state, "round": 1.9}, "round=1.9 is not a round number"),
     (lambda state: {**state, "round": True}, "round=True is not a round number"),
     (lambda state: {k: v for k, v in state.items() if k != "sha256"}, "missing or malformed 'sha256'"),
     (lambda state: {**state, "strategy_state": {"parties": {}}}, "strategy_state has no valid numpy_rng"),
     (lambda state: {**state, "run": {**state["run"], "run_id": "0" * 32}}, "not written by this run")],
    ids=["fractional-round", "boolean-round", "no-digest", "no-numpy-rng", "other-run"],
)
def test_fault_edited_checkpoint_state_is_refused(fresh, tmp_path, edit, message):
    run(fresh, tmp_path, ScriptedGrid(), rounds=1)
    state_file = tmp_path / "checkpoint" / "state.json"
    state_file.write_text(json.dumps(edit(json.loads(state_file.read_text()))))
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError, match=message):
        run_federation(ScriptedGrid(), fresh, tmp_path, resume=True)
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics  # nothing written


def test_fault_swapped_checkpoint_weights_are_refused(fresh, reference, tmp_path):
    """Random values of the right shapes (or finite 3e38s) in place of the checkpointed Global-LiGO, or the
    checkpoint folder of another run with the same config: refused, naming the file."""
    from safetensors.torch import save_file

    run(fresh, tmp_path / "a", ScriptedGrid(), rounds=1)
    run(fresh, tmp_path / "b", ScriptedGrid(), rounds=1)
    weights = next((tmp_path / "a" / "checkpoint").glob("global-*.safetensors"))
    save_file({k: torch.full_like(v, 3e38) for k, v in reference.items()}, str(weights))
    with pytest.raises(CheckpointError, match=f"{weights.name} is not the file .* SHA-256 differs"):
        run_federation(ScriptedGrid(), fresh, tmp_path / "a", resume=True)
    (tmp_path / "b" / "run.json").write_text((tmp_path / "a" / "run.json").read_text())
    with pytest.raises(CheckpointError, match="not written by this run"):
        run_federation(ScriptedGrid(), fresh, tmp_path / "b", resume=True)


@pytest.mark.parametrize(("label", "shown"), [("8969", "8969"), ("-1", "-1"), ("0.5", "0.5")],
                         ids=["8969", "negative", "fraction"])
def test_hostile_labels_outside_num_labels_stop_before_the_run_folder_exists(shared_data_dir, tmp_path, label, shown):
    from fedgrow_hf.data import LabelError
    from fedgrow_hf.federated.simulate import simulate

    rows = ["sentence\tlabel"] + [f"a fine sentence number {i}\t{label if i == 7 else i % 2}" for i in range(60)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text("\n".join(rows) + "\n")
    config = tiny_federation(shared_data_dir)
    config.data.source, config.data.limit = str(tmp_path / "data"), None
    with pytest.raises(LabelError, match=rf"label {shown} \(row [0-9]+\) is not a class id in \[0, 2\) "
                                         r"\(num_labels = 2\); 1 of 60 rows") as refused:
        simulate(config, tmp_path / "run", engine="inprocess")
    assert "\n" not in str(refused.value) and not (tmp_path / "run").exists()


def test_hostile_labels_outside_num_labels_stop_the_cli_before_its_log_makes_the_run_folder(
    shared_data_dir, tmp_path, capsys
):
    """``fedgrow simulate`` logs into the run folder: its data check comes before that log is opened."""
    from fedgrow_hf.cli import main

    rows = ["sentence\tlabel"] + [f"a fine sentence number {i}\t{8969 if i == 7 else i % 2}" for i in range(60)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text("\n".join(rows) + "\n")
    config = tiny_federation(shared_data_dir)
    config.data.source, config.data.limit = str(tmp_path / "data"), None
    (tmp_path / "bad.json").write_text(config.to_json())
    assert main(["simulate", str(tmp_path / "bad.json"), "--run-dir", str(tmp_path / "run"), "--engine", "inprocess"]) == 1
    assert "label 8969 (row" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_fault_full_disk_names_the_file(tmp_path, monkeypatch):
    """torch.save on a full disk says only "[enforce fail at inline_container.cc:672] . unexpected pos": the
    error names the file and the cause."""
    import shutil
    from collections import namedtuple

    from fedgrow_hf.federated.disk import WriteFailed, writing

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 0))

    def full_disk_save(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk_save)
    target = tmp_path / "round-0001" / "optimizer.pt"
    with pytest.raises(WriteFailed, match=rf"cannot write {target}: no space left on its disk$"):
        with writing(target):
            torch.save({"step": 1}, target)


def test_fault_checkpoint_write_failing_keeps_the_previous_one(fresh, tmp_path, monkeypatch):
    from fedgrow_hf.federated import checkpoint
    from fedgrow_hf.federated.checkpoint import ServerCheckpoint, save_checkpoint
    from fedgrow_hf.federated.disk import WriteFailed

    run(fresh, tmp_path, ScriptedGrid(), rounds=1)
    before = load_checkpoint(tmp_path)

    def no_space(state, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", no_space)
    with pytest.raises(WriteFailed, match="cannot write .*global-0002.safetensors: no space left on its disk"):
        save_checkpoint(tmp_path, ServerCheckpoint(2, before.global_state, before.strategy_state, run=before.run))
    assert not list((tmp_path / "checkpoint").glob("*.tmp"))
    after = load_checkpoint(tmp_path)
    assert after.round == 1 and all(torch.equal(after.global_state[k], v) for k, v in before.global_state.items())


def test_hostile_a_party_moves_to_a_new_node_only_when_its_node_is_gone(config):
    """After a server restart under Flower's simulation engine every node has a new id: a checkpointed binding
    whose node is no longer connected may be taken by the node now claiming that party; one whose node is
    connected may not."""
    from fedgrow_hf.federated.screening import FINETUNE_METRICS, ReplyScreen

    def reply(node: int, party: int) -> Message:
        instruction = Message(RecordDict({CONFIG_KEY: ConfigRecord({"mode": "local"})}), dst_node_id=node,
                              message_type="train.finetune")
        metrics = {PARTY_KEY: party, WEIGHT_KEY: 40, "train_loss": 0.6, "eval_loss": 0.6, "accuracy": 0.7,
                   "precision_macro": 0.6}
        return Message(RecordDict({METRICS_KEY: MetricRecord(metrics)}), reply_to=instruction)

    screen = ReplyScreen(None, FINETUNE_METRICS, 3, 0, 1000, parties={101: 0, 202: 1}, connected={202, 909})
    valid, dropped = screen.screen([reply(909, 0), reply(808, 1)])
    assert [screen.party_of(message) for message in valid] == [0]
    assert screen.parties == {202: 1, 909: 0} and "party=1 belongs to node 202" in dropped[0].reason


def test_hostile_value_cannot_leave_the_honest_range_of_a_median_aggregate():
    """The aggregate of a round without a common start: per coordinate the middle value of three (an honest
    one while two are honest), the mean of the two middle values of an even number (two replies: their mean,
    not their element-wise minimum)."""
    from fedgrow_hf.federated.clipping import median_state

    honest = [{"w": torch.tensor([0.01, -0.02, 0.03])}, {"w": torch.tensor([0.02, -0.01, 0.01])}]
    hostile = {"w": torch.tensor([3e38, -3e38, 3e38])}
    torch.testing.assert_close(median_state([*honest, hostile], lower=False)["w"], torch.tensor([0.02, -0.02, 0.03]))
    torch.testing.assert_close(median_state(honest, lower=False)["w"], torch.tensor([0.015, -0.015, 0.02]))
    torch.testing.assert_close(median_state(honest)["w"], torch.tensor([0.01, -0.02, 0.01]))  # the clipping centre
