"""The in-process engine runs the same federation as Flower's simulation engine, without Ray."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from flwr.app import RecordDict

from fedgrow_hf.federated.inprocess import FIRST_NODE_ID, InProcessGrid
from fedgrow_hf.federated.phases import METRICS_FILE
from fedgrow_hf.federated.simulate import simulate
from tests.federated.conftest import tiny_federation


@pytest.mark.slow
def test_inprocess_federation_matches_the_ray_simulation(tiny_run, tmp_path):
    """Same config, same seeds: the same final Global-LiGO and the same rounds as the Ray run."""
    threads = torch.get_num_threads()
    # as many threads as Ray's one-CPU actors have (OMP_NUM_THREADS where the user set it, which Ray passes on;
    # else Ray's 1): the same reductions, so the same Adam steps
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        final = simulate(tiny_run["config"], tmp_path, engine="inprocess")
    finally:
        torch.set_num_threads(threads)

    assert final.keys() == tiny_run["final"].keys()
    for key, value in final.items():
        torch.testing.assert_close(value, tiny_run["final"][key], atol=1e-5, rtol=1e-4)
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    ray_records = [json.loads(line) for line in (tiny_run["dir"] / METRICS_FILE).read_text().splitlines()]
    assert [(r["phase"], r["round"]) for r in records] == [(r["phase"], r["round"]) for r in ray_records]
    assert [sorted(r["parties"]) for r in records] == [sorted(r["parties"]) for r in ray_records]
    assert not any(r.get("dropped") for r in records)
    parties = tiny_run["config"].num_parties
    assert all((tmp_path / "parties" / f"party-{party}" / "grown").is_dir() for party in range(parties))


def test_grid_gives_parties_the_simulation_engines_node_config():
    seen = []

    def client_app(message, context):
        seen.append((message.metadata.dst_node_id, dict(context.node_config)))
        return message

    grid = InProcessGrid(client_app, num_parties=3)
    assert grid.get_node_ids() == [FIRST_NODE_ID, FIRST_NODE_ID + 1, FIRST_NODE_ID + 2]
    with grid.serving():
        messages = [grid.create_message(RecordDict(), "train", node, "1") for node in reversed(grid.get_node_ids())]
        grid.send_and_receive(messages)
        with pytest.raises(ValueError, match="no party has node id 7"):
            grid.send_and_receive([grid.create_message(RecordDict(), "train", 7, "1")])
    assert seen == [(FIRST_NODE_ID + party, {"partition-id": party, "num-partitions": 3}) for party in range(3)]


def test_a_party_slower_than_the_timeout_sends_no_reply_and_the_others_do():
    """Each party's turn gets the whole timeout, as each party of a deployment does in parallel."""

    def client_app(message, context):
        time.sleep(0.3 if message.metadata.dst_node_id == FIRST_NODE_ID + 1 else 0.0)
        return message

    grid = InProcessGrid(client_app, num_parties=3)
    with grid.serving():
        messages = [grid.create_message(RecordDict(), "train", node, "1") for node in grid.get_node_ids()]
        replies = grid.send_and_receive(messages, timeout=0.2)
        assert [reply.metadata.dst_node_id for reply in replies] == [FIRST_NODE_ID, FIRST_NODE_ID + 2]
        assert len(grid.send_and_receive(messages)) == 3  # no timeout: every party answers


def test_inprocess_engine_refuses_secure_aggregation_and_unknown_engines(shared_data_dir, tmp_path):
    config = tiny_federation(shared_data_dir)
    config.federation.secure_aggregation = {"enabled": True}
    with pytest.raises(ValueError, match="secure aggregation needs Flower's simulation engine"):
        simulate(config, tmp_path, engine="inprocess")
    with pytest.raises(ValueError, match="unknown engine 'threads'"):
        simulate(tiny_federation(shared_data_dir), tmp_path, engine="threads")


def test_fault_a_party_exception_is_its_error_reply_naming_only_its_category(caplog):
    """A party's exception (here one whose text names a private file) is that party's error reply, as under
    Flower's engines; the server learns the exception's class, the party's log keeps the details."""

    def client_app(message, context):
        if message.metadata.dst_node_id == FIRST_NODE_ID + 1:
            raise AttributeError("'ParametrizedEmbedding' object has no attribute 'weight' (/home/p1/private.csv)")
        return message

    grid = InProcessGrid(client_app, num_parties=3)
    with grid.serving():
        messages = [grid.create_message(RecordDict(), "train", node, "1") for node in grid.get_node_ids()]
        replies = grid.send_and_receive(messages)
    assert [reply.has_error() for reply in replies] == [False, True, False]
    assert replies[1].metadata.src_node_id == FIRST_NODE_ID + 1
    assert replies[1].error.reason == "AttributeError (details in the party's log)"
    assert "private.csv" in caplog.text


def test_fault_the_party_mod_turns_an_exception_into_an_error_reply():
    from flwr.app import Context, Message

    from fedgrow_hf.federated.party_errors import contain_party_errors

    def crash(message, context):
        raise RuntimeError("/home/p1/data/train.tsv line 3")

    grid = InProcessGrid(lambda message, context: message, num_parties=1)
    with grid.serving():
        message = grid.create_message(RecordDict(), "train", FIRST_NODE_ID, "1")
        reply = contain_party_errors(message, Context(0, FIRST_NODE_ID, {}, RecordDict(), {}), crash)
    assert isinstance(reply, Message) and reply.has_error()
    assert reply.error.reason == "RuntimeError (details in the party's log)"
