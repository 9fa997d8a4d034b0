"""``metrics.jsonl``, the run's record: one strict-JSON object per line, one line per round and phase.

Why its own module: the file must survive the server being killed at any moment. Each record is appended
as one whole line in a single write and fsynced, so a kill leaves at worst one torn last line (no newline);
readers take only whole lines that parse (:func:`read_records`), and a resume rewrites the file back to the
rounds its checkpoints hold (:func:`truncate_records`) before it appends again, so no round is recorded
twice and no record is glued to a torn one. Non-finite numbers are written as ``null``: strict JSON parsers
reject ``NaN`` and ``Infinity``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def append_record(path: Path, record: Record) -> None:
    """Append ``record`` as one line, durably; a torn last line (an earlier kill) is first cut off."""
    line = _line(record)
    with open(path, "ab+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.truncate(_whole_lines_size(path))
                handle.seek(0, os.SEEK_END)
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path) -> list[Record]:
    """The whole, parseable records of ``path`` (none if it does not exist), in order."""
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().split(b"\n")[:-1]:  # the part after the last newline is not a whole line
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_records(path: Path, keep: Callable[[Record], bool]) -> list[Record]:
    """Rewrite ``path`` (atomically) with only its whole records that ``keep`` accepts, the first of each
    ``(phase, round)``; returns them."""
    kept, seen = [], set()
    for record in read_records(path):
        key = (record.get("phase"), record.get("round"))
        if key not in seen and keep(record):
            kept.append(record)
            seen.add(key)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(b"".join(map(_line, kept)))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return kept


def _line(record: Record) -> bytes:
    return (json.dumps(_finite(record), allow_nan=False) + "\n").encode("utf-8")


def _whole_lines_size(path: Path) -> int:
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
