"""A Flower ``Grid`` that runs every party's ``ClientApp`` in this process, one after another.

Flower's simulation engine runs parties as Ray actors: the right tool for many parties on many cores,
but Ray is a large dependency, its actors see no GPU unless given a share of one, and starting it costs
seconds. On one machine with one accelerator (or for debugging with a plain Python stack) the same
``ServerApp`` logic (:func:`.server_app.run_federation`) and the same ``ClientApp`` can exchange their
messages directly: the party code, the screening of replies, aggregation and checkpoints are exactly
those of a deployment; only the transport differs. Parties train one after another and share the
process's device.

Secure aggregation's workflow pushes and pulls messages in several stages through Flower's own driver
protocol and is not supported here; it runs under Flower's simulation engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from .party_errors import error_reply

logger = logging.getLogger(__name__)

# Flower gives deployed nodes random 64-bit ids; these fixed ones keep in-process runs reproducible.
FIRST_NODE_ID = 1001


class InProcessGrid(Grid):
    """Sends every message to the party's ``ClientApp`` in this process and returns its reply.

    Party ``i`` is node ``FIRST_NODE_ID + i`` with ``node_config = {"partition-id": i,
    "num-partitions": n}``, as Flower's simulation engine configures its virtual SuperNodes; each
    party keeps its own ``Context.state`` across rounds.
    """

    def __init__(self, client_app: ClientApp, num_parties: int, run_id: int = 0) -> None:
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self.contexts = {
            FIRST_NODE_ID + party: Context(
                run_id=run_id, node_id=FIRST_NODE_ID + party, state=RecordDict(), run_config={},
                node_config={"partition-id": party, "num-partitions": num_parties},
            )
            for party in range(num_parties)
        }

    @contextmanager
    def serving(self) -> Iterator[InProcessGrid]:
        """The task identity Flower's ``ServerApp`` runtime sets before ``main`` runs (messages read
        their run id from it), for as long as the federation runs here; cleared afterwards."""
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, self._run.run_id, SUPERLINK_NODE_ID
        try:
            yield self
        finally:
            TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("the in-process engine only answers send_and_receive (no secure aggregation)")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("the in-process engine only answers send_and_receive (no secure aggregation)")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Every party's reply, in node order. An exception in a party's app is that party's error reply
        (:func:`.party_errors.error_reply`: its category goes to the server, the traceback to the log), as
        under Flower's engines: one party's failure does not end the federation.

        In a deployment parties work in parallel and ``timeout`` bounds each one's time to reply; here
        they take turns, so each party gets the whole ``timeout`` for its own turn. A party that takes
        longer cannot be interrupted, but its reply is dropped, as a late reply is in a deployment, and
        the server goes on with the others."""
        replies = []
        for message in sorted(messages, key=lambda item: item.metadata.dst_node_id):
            node = message.metadata.dst_node_id
            context = self.contexts.get(node)
            if context is None:
                raise ValueError(f"no party has node id {node}")
            started = time.monotonic()
            try:
                reply = self.client_app(message, context)
            except Exception as error:  # noqa: BLE001 - any failure of a party is its reply
                reply = error_reply(message, error)
            took = time.monotonic() - started
            if timeout is not None and took > timeout:
                logger.warning("node %d replied after %.1f s, beyond the %.1f s timeout: reply dropped", node, took, timeout)
                continue
            replies.append(reply)
        return replies
