"""A safetensors checkpoint written tensor by tensor, in whatever order the tensors are produced.

``safetensors.torch.save_file`` needs every tensor of a file in memory at once; a merged LiGO target
is produced one block at a time and should never be held whole. But every tensor's name, shape and
dtype are known before any is computed (from the target's meta skeleton), so each file's header, and
so each tensor's byte range, can be written first; a tensor's bytes then go to their place as soon as
it exists. The files are what ``save_pretrained`` writes: one ``model.safetensors``, or
``model-0000k-of-0000n.safetensors`` shards of at most ``max_shard_size`` bytes plus
``model.safetensors.index.json`` when the model is bigger.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

# safetensors' names for torch dtypes (the format's "dtype" field).
SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
DEFAULT_MAX_SHARD_SIZE = 50 * 10**9  # transformers' save_pretrained default ("50GB")
# Weight files a model directory may already hold: a stale one would shadow (or mix with) the new ones.
MODEL_WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
SHARD_PATTERN = re.compile(r"(model|pytorch_model)-\d{5}-of-\d{5}\.(safetensors|bin)")


@dataclass(frozen=True)
class _Place:
    file: int
    offset: int  # absolute, header included
    shape: tuple[int, ...]
    dtype: torch.dtype


class StreamedCheckpoint:
    """Write ``{name: (shape, dtype)}`` as a (sharded) safetensors checkpoint, one tensor at a time.

    Use as a context manager; :meth:`write` each tensor once, in any order. Leaving the block checks
    that every announced tensor was written and only then replaces any weights already in the
    directory by the new files (and index): an interrupted merge loses nothing and never leaves a
    checkpoint that looks complete.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        layout: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
        max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._metadata = {"format": "pt", **(metadata or {})}
        shards: list[dict[str, tuple[tuple[int, ...], torch.dtype]]] = [{}]
        size = 0
        for name, (shape, dtype) in layout.items():
            if dtype not in SAFETENSORS_DTYPES:
                raise TypeError(f"{name}: safetensors cannot store dtype {dtype}")
            nbytes = math.prod(shape) * dtype.itemsize
            if shards[-1] and size + nbytes > max_shard_size:
                shards.append({})
                size = 0
            shards[-1][name] = (tuple(shape), dtype)
            size += nbytes
        self.file_names = (
            [SAFE_WEIGHTS_NAME]
            if len(shards) == 1
            else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        )
        self._shards = shards
        self._places: dict[str, _Place] = {}
        self._written: set[str] = set()
        self._handles: list = []
        self.total_size = sum(math.prod(shape) * dtype.itemsize for shape, dtype in layout.values())

    def _partial(self, index: int) -> Path:
        return self.directory / f".partial-{self.file_names[index]}"

    def __enter__(self) -> StreamedCheckpoint:
        for index, shard in enumerate(self._shards):
            header: dict[str, object] = {"__metadata__": self._metadata}
            offset = 0
            for name, (shape, dtype) in shard.items():
                nbytes = math.prod(shape) * dtype.itemsize
                header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
            encoded = json.dumps(header, separators=(",", ":")).encode()
            encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
            start = 8 + len(encoded)
            handle = open(self._partial(index), "wb")  # noqa: SIM115 -- closed in __exit__
            self._handles.append(handle)
            handle.write(struct.pack("<Q", len(encoded)) + encoded)
            handle.truncate(start + offset)
            for name, (shape, dtype) in shard.items():
                self._places[name] = _Place(index, start + header[name]["data_offsets"][0], shape, dtype)
        return self

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Cast ``tensor`` to the announced dtype and write its bytes to its place."""
        place = self._places.get(name)
        if place is None:
            raise KeyError(f"{name} is not a tensor of this checkpoint")
        if name in self._written:
            raise ValueError(f"{name} was already written")
        if tuple(tensor.shape) != place.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, the checkpoint announced {place.shape}")
        data = tensor.detach().to(device="cpu", dtype=place.dtype).contiguous().reshape(-1).view(torch.uint8)
        handle = self._handles[place.file]
        handle.seek(place.offset)
        handle.write(data.numpy())  # numpy's buffer: no copy
        self._written.add(name)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.close()
        missing = sorted(set(self._places) - self._written)
        if kind is not None or missing:
            for index in range(len(self.file_names)):
                self._partial(index).unlink(missing_ok=True)
        if kind is not None:
            return
        if missing:
            raise RuntimeError(f"{len(missing)} tensor(s) of the checkpoint were never written, e.g. {missing[:5]}")
        for path in self.directory.iterdir():
            if path.is_file() and (path.name in MODEL_WEIGHT_FILES or SHARD_PATTERN.fullmatch(path.name)):
                path.unlink()
        for index, name in enumerate(self.file_names):
            self._partial(index).rename(self.directory / name)
        if len(self.file_names) > 1:
            index_file = {
                "metadata": {"total_size": self.total_size},
                "weight_map": {name: self.file_names[place.file] for name, place in sorted(self._places.items())},
            }
            (self.directory / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index_file, indent=2) + "\n")
