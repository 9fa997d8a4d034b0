"""Batching for ``transformers.Trainer``: fixed-length rows in, batches cut to their longest row out.

Why: :func:`.text.tokenize_text` pads every row to ``max_length`` so that rows stay plain torch tensors
any collator can stack, but SST-2's training phrases average 13 tokens against a ``max_length`` of 48.
Cutting the padding columns no row of a batch uses gives the same outputs (the attention mask already
hides them, and BERT's positions count from the left) for a third less compute per step on CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import default_data_collator

# Columns laid out along the token axis; all of them are cut together.
TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def trim_padding_collator(features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``default_data_collator``, then the trailing columns where ``attention_mask`` is 0 in every row
    are dropped from every token column. Batches without an attention mask (images) pass unchanged."""
    batch = default_data_collator(list(features))
    mask = batch.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        return batch
    used = torch.nonzero(mask.any(dim=0))
    length = int(used.max()) + 1 if len(used) else 1
    for column in TOKEN_COLUMNS:
        if column in batch:
            batch[column] = batch[column][:, :length]
    return batch
