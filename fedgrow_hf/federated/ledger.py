"""A party's own record of what crossed its wire: every message it received and every reply it sent, with the
payload bytes of each record, in ``<party folder>/ledger.jsonl``.

Why the party keeps one: the server counts bytes too (``metrics.jsonl``), but in a deployment a party cannot
read the server's files, and a party that is promised that only its Global-LiGO leaves it should be able to
check that on its own machine. Each line names the records that came in or left and their size; the party's
model card states the totals (:mod:`.card`). :func:`keep_ledger` is a Flower mod, placed in
:func:`.client_app.make_client_app` outside the user's mods, so it records what finally leaves, after any mod
that changes a reply (Flower's client-side clipping), and the SecAgg+ exchange as well.

Payload bytes are counted as the server counts them (:func:`.screening.payload_bytes`: the serialised arrays,
without the message's framing), plus the byte strings of config records: that is how SecAgg+ carries its
masked vectors, public keys and encrypted key shares. Scalars (metrics, settings) are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod

from ..experiment.config import FederationConfig
from .party import party_dir_of, party_id_of
from .records import append_record, read_records
from .run_config import resolve_run
from .screening import CONFIG_KEY, payload_bytes

LEDGER_FILE = "ledger.jsonl"
RECEIVED, SENT = "received", "sent"
ROUND_KEYS = ("server-round", "finetune-round")  # where a message's settings name its round


@dataclass(frozen=True)
class LedgerTotals:
    """Payload bytes a party received and sent, summed over its ledger."""

    received: int
    sent: int


def ledger_path(root: Path, party: int) -> Path:
    return party_dir_of(root, party) / LEDGER_FILE


def record_bytes(content: RecordDict) -> dict[str, int]:
    """Payload bytes of each record of ``content`` that carries any, by record name."""
    sizes = {name: payload_bytes(record) for name, record in content.array_records.items()}
    sizes.update({name: _config_bytes(record) for name, record in content.config_records.items()})
    return {name: size for name, size in sizes.items() if size}


def ledger_totals(root: Path, party: int, pending: RecordDict | None = None) -> LedgerTotals:
    """What the party's ledger holds, plus ``pending``: a reply built but not yet sent (a card written while its
    message is handled counts the reply that carries it out)."""
    totals = {RECEIVED: 0, SENT: sum(record_bytes(pending).values()) if pending is not None else 0}
    for line in read_records(ledger_path(root, party)):  # every whole line is one :func:`_line` wrote
        totals[line["direction"]] += sum(line["records"].values())
    return LedgerTotals(totals[RECEIVED], totals[SENT])


def keep_ledger(config: FederationConfig | None, run_dir: str | None) -> Mod:
    """A Flower mod: append the message, then the wrapped app's reply (an error reply carries nothing), to the
    party's ledger."""

    def keep(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        _, root = resolve_run(context.run_config, config, run_dir)
        path = ledger_path(root, party_id_of(context))
        path.parent.mkdir(parents=True, exist_ok=True)
        append_record(path, _line(RECEIVED, msg, msg.content))
        reply = call_next(msg, context)
        append_record(path, _line(SENT, msg, None if reply.has_error() else reply.content))
        return reply

    return keep


def _line(direction: str, msg: Message, content: RecordDict | None) -> dict[str, Any]:
    """One ledger line: the direction, the message it answers or is, its round where it names one, the records."""
    settings = msg.content.config_records.get(CONFIG_KEY, {})
    rounds = {key: int(settings[key]) for key in ROUND_KEYS if key in settings}
    return {"direction": direction, "message_type": msg.metadata.message_type, **rounds,
            "records": {} if content is None else record_bytes(content)}


def _config_bytes(record: ConfigRecord) -> int:
    """Bytes of the byte strings a config record holds (single or in lists)."""
    size = 0
    for value in record.values():
        if isinstance(value, bytes):
            size += len(value)
        elif isinstance(value, list):
            size += sum(len(item) for item in value if isinstance(item, bytes))
    return size
