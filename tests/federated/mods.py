"""Flower client mods the simulation tests wrap around every party's app.

They run inside Ray workers, so the test registers this module to be pickled by value.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np


def make_recording_mod(directory: str):
    """Record every message that leaves a party: its records (names, keys, shapes) and its arrays."""

    def record(msg, context, call_next):
        reply = call_next(msg, context)
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        content = None if reply.has_error() else reply.content
        summary = {
            "party": int(context.node_config["partition-id"]),
            "message_type": msg.metadata.message_type,
            "server_round": int(msg.content["config"].get("server-round", 0)),
            "attempt": int(msg.content["config"].get("attempt", 0)),
            "record_types": {} if content is None else {k: type(v).__name__ for k, v in content.items()},
            "arrays": {} if content is None else {
                rec: {key: list(arr.shape) for key, arr in record.items()} for rec, record in content.array_records.items()
            },
            "metrics": {} if content is None else {rec: dict(m) for rec, m in content.metric_records.items()},
        }
        (out / f"{name}.json").write_text(json.dumps(summary))
        if content is not None and "arrays" in content.array_records:
            np.savez(out / f"{name}.npz", **{k: a.numpy() for k, a in content["arrays"].items()})
        if "arrays" in msg.content.array_records:  # what came in: the server's state of that round
            np.savez(out / f"{name}-in.npz", **{k: a.numpy() for k, a in msg.content["arrays"].items()})
        return reply

    return record


def make_fault_mod(faults: dict[str, str], hang_seconds: float = 0.0):
    """Inject faults ``{"<party>:<round>:<attempt>": "crash" | "hang" | "nan" | "extra_key"}`` into
    phase-1 rounds; "hang" answers only after ``hang_seconds``."""

    def fault(msg, context, call_next):
        if msg.metadata.message_type != "train":
            return call_next(msg, context)
        config = msg.content["config"]
        key = f"{context.node_config['partition-id']}:{config['server-round']}:{config['attempt']}"
        kind = faults.get(key)
        if kind == "crash":
            raise RuntimeError(f"injected crash of party {key}")
        if kind == "hang":
            time.sleep(hang_seconds)
        reply = call_next(msg, context)
        if kind is not None and not reply.has_error():
            from flwr.app import Array

            arrays = reply.content["arrays"]
            first = next(iter(arrays.keys()))
            if kind == "nan":
                values = arrays[first].numpy().copy()
                values.flat[0] = np.nan
                arrays[first] = Array(values)
            elif kind == "extra_key":
                arrays["base_model.model.bert.embeddings.word_embeddings.weight"] = Array(np.zeros((4, 4), np.float32))
        return reply

    return fault


def make_ratchet_mod(attacker: int, norm_bound: float, norms: dict, *, attack: bool = True,
                     claimed_examples: int | None = None):
    """Party ``attacker`` trains honestly, then sends the update that ratchets a bound measured from the
    current state: ``c x (1 + 0.99 x norm_bound x max(1, |c|) / |c|)``, ``c`` being the state it received
    (or, in federated phase 2's first round, where it received the Global-LiGO, its own grown model); with
    ``claimed_examples`` it also claims that many examples. Every party records the norm of the arrays it
    received under ``norms[(message type, round)]`` (with ``attack=False``: the no-attack run's record)."""
    from flwr.app import ArrayRecord, MetricRecord

    def norm(state) -> float:
        return float(sum(value.double().square().sum() for value in state.values()) ** 0.5)

    def ratchet(msg, context, call_next):
        reply = call_next(msg, context)
        config = msg.content["config"]
        step = (msg.metadata.message_type, int(config.get("server-round", config.get("finetune-round", 0))))
        received = msg.content["arrays"].to_torch_state_dict()
        norms[step] = norm(received)
        if not attack or context.node_config["partition-id"] != attacker or reply.has_error() \
                or "arrays" not in reply.content.array_records:
            return reply
        sent = reply.content["arrays"].to_torch_state_dict()
        centre = received if received.keys() == sent.keys() else sent
        size = norm(centre)
        scale = 1 + 0.99 * norm_bound * max(1.0, size) / size
        reply.content["arrays"] = ArrayRecord({key: (value.double() * scale).to(value.dtype)
                                               for key, value in centre.items()})
        if claimed_examples is not None:
            metrics = dict(reply.content["metrics"])
            metrics["num-examples"] = claimed_examples
            reply.content["metrics"] = MetricRecord(metrics)
        return reply

    return ratchet
