"""Low-memory materialisation of a grown model: a LiGO adapter becomes a plain transformers model.

Growing is deterministic given the adapter (operator + heads) and the source checkpoint(s), so the
grown target is never stored: it is *built*. :func:`merge_adapter` does so without ever holding two
copies of the target -- the peak of ``PeftModel.merge_and_unload()`` on a fully allocated target.
A fresh target skeleton is created on the meta device, the operator grows one target block at a time,
and each block's tensors are assigned (accelerate's ``set_module_tensor_to_device``) in the requested
dtype, straight onto the device a ``device_map`` gives them -- a GPU, the CPU, or disk offload
(accelerate's ``offload_weight`` + ``dispatch_model``) for targets too big for one device.

:func:`write_merged` (``fedgrow merge`` without a device map) never holds the target at all: each
grown block is written to its place in the safetensors checkpoint and dropped, so merging needs memory
for the sources, the operator and one block -- a target larger than RAM merges.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import dispatch_model, init_empty_weights
from accelerate.utils import (
    get_balanced_memory,
    get_max_memory,
    infer_auto_device_map,
    offload_weight,
    save_offload_index,
    set_module_tensor_to_device,
)
from huggingface_hub import constants, hf_hub_download
from peft import (
    AutoPeftModelForCausalLM,
    AutoPeftModelForFeatureExtraction,
    AutoPeftModelForQuestionAnswering,
    AutoPeftModelForSequenceClassification,
    AutoPeftModelForTokenClassification,
    PeftConfig,
    PeftModel,
    get_peft_model_state_dict,
)
from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING, check_import_allowlist, get_default_import_allowlist
from safetensors import safe_open
from transformers import AutoConfig, AutoProcessor, PretrainedConfig, PreTrainedModel
from transformers.integrations.accelerate import expand_device_map
from transformers.modeling_utils import remove_tied_weights_from_state_dict

from .architectures import get_architecture_table
from .checkpoint_writer import DEFAULT_MAX_SHARD_SIZE, StreamedCheckpoint
from .tuners.ligo import GrowthShapeError, LiGOConfig
from .tuners.ligo.layer import LiGOOperator
from .tuners.ligo.saved import check_saved_shapes
from .tuners.ligo.shapes import TransformerWeights

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
AUTO_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
# Files that mark a saved tokenizer / image processor next to a checkpoint.
PROCESSOR_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "preprocessor_config.json",
    "processor_config.json",
)

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")

DeviceMap = str | dict[str, str | int | torch.device] | None


def read_ligo_config(adapter_dir: str | os.PathLike, sources: Sequence[str | os.PathLike] | None = None) -> LiGOConfig:
    """The adapter's :class:`LiGOConfig`, with errors that say what is wrong with the directory.

    ``sources`` are the locations of the sources it names, in order: an adapter records a local
    source by its name only (unless saved with ``record_source_paths``).
    """
    local = Path(adapter_dir)
    if local.exists() and not (local / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter_dir} has no adapter_config.json: it is not a LiGO adapter directory"
        )
    if not local.exists():
        _fetchable_from_hub(str(adapter_dir))
    try:
        config = PeftConfig.from_pretrained(str(adapter_dir))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot parse {local / 'adapter_config.json'}: {error}") from error
    except (TypeError, KeyError) as error:
        raise ValueError(f"unreadable adapter config in {adapter_dir}: {error}") from error
    except ValueError as error:  # PEFT's answer when a Hub id cannot be fetched
        if local.exists():
            raise
        raise OSError(
            f"{adapter_dir!r} is no local directory and cannot be fetched from the Hub at {constants.ENDPOINT} "
            f"(no network, or no such repository): {str(error).splitlines()[0]}"
        ) from error
    if not isinstance(config, LiGOConfig):
        raise ValueError(f"{adapter_dir} holds a {config.peft_type} adapter, not a LiGO one")
    if not config.target_config:
        raise ValueError(
            f"{adapter_dir}: adapter_config.json has no target_config, so the target cannot be rebuilt"
        )
    if sources:
        if len(sources) != len(config.source_paths):
            raise ValueError(
                f"{adapter_dir} grows {len(config.source_paths)} source(s) {config.source_paths}, "
                f"but {len(sources)} location(s) were given"
            )
        config.source_model_name_or_path = [str(source) for source in sources]
    return config


def _fetchable_from_hub(repo_id: str) -> None:
    """Fail fast, in one line, when a name that is no local path would need the Hub in offline mode."""
    if constants.HF_HUB_OFFLINE:
        raise OSError(
            f"{repo_id!r} is no local directory, and HF_HUB_OFFLINE is set: cannot fetch it from the Hub"
        )


def target_config_of(config: LiGOConfig) -> PretrainedConfig:
    """The target's transformers config, rebuilt from ``LiGOConfig.target_config``."""
    fields = dict(config.target_config)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ValueError("the adapter's target_config has no model_type")
    try:
        target_config = AutoConfig.for_model(model_type, **fields)
    except ValueError as error:  # transformers does not know the model type
        raise ValueError(f"unknown architecture in the adapter's target_config: {error}") from error
    get_architecture_table(target_config)  # LiGO must know how to grow it
    return target_config


def target_model_class(config: LiGOConfig) -> type:
    """The class the adapter was created on, resolved the way ``peft.AutoPeftModel`` resolves it; the
    architecture's auto class (``AutoModel``, ``AutoModelForCausalLM`` for a decoder) when nothing says."""
    if config.task_type is not None:
        for auto in (
            AutoPeftModelForCausalLM,
            AutoPeftModelForSequenceClassification,
            AutoPeftModelForTokenClassification,
            AutoPeftModelForQuestionAnswering,
            AutoPeftModelForFeatureExtraction,
        ):
            if auto._target_peft_class is MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(config.task_type):
                return auto._target_class
        raise ValueError(f"LiGO adapters of task_type {config.task_type!r} are not supported")
    mapping = config.auto_mapping or {}
    if mapping.get("base_model_class"):
        library = mapping["parent_library"]
        if not check_import_allowlist(get_default_import_allowlist(), library):
            raise ValueError(
                f"the adapter wants its target class from {library!r}, which is not a transformers module"
            )
        return getattr(importlib.import_module(library), mapping["base_model_class"])
    return get_architecture_table(target_config_of(config)).auto_class


def load_grown(
    adapter_dir: str | os.PathLike,
    *,
    sources: Sequence[str | os.PathLike] | None = None,
    is_trainable: bool = False,
) -> PeftModel:
    """Rebuild the grown ``PeftModel`` from an adapter directory (or Hub id) and its sources.

    The target skeleton is created on the meta device from ``target_config``; the sources are loaded
    by the LiGO tuner from ``sources`` or else from the adapter's ``source_model_name_or_path`` (Hub
    ids, or local paths of an adapter saved with ``record_source_paths``), and the operator and heads
    from the adapter.
    """
    config = read_ligo_config(adapter_dir, sources)
    model_config = target_config_of(config)
    weights = adapter_weights_file(adapter_dir)
    if weights.suffix == ".safetensors":  # a legacy .bin has no header to read shapes from
        check_saved_shapes(config, get_architecture_table(model_config), saved_shapes(weights))
    model_class = target_model_class(config)
    with init_empty_weights(include_buffers=False):
        is_model_class = issubclass(model_class, PreTrainedModel)
        target = model_class(model_config) if is_model_class else model_class.from_config(model_config)
    try:
        model = PeftModel.from_pretrained(target, str(adapter_dir), is_trainable=is_trainable, config=config)
    except RuntimeError as error:  # torch's load_state_dict lists every mismatch on its own line
        mismatches = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        if not mismatches:
            raise
        raise GrowthShapeError(
            f"the operator saved in {adapter_dir} does not fit the adapter's target_config "
            f"({len(mismatches)} tensors differ; first: {mismatches[0]})"
        ) from error
    if weights.suffix == ".safetensors":
        check_adapter_tensors(weights, get_peft_model_state_dict(model))
    return model


def check_adapter_tensors(weights_file: Path, expected: dict[str, torch.Tensor]) -> None:
    """Refuse a saved adapter holding keys the model does not have (PEFT ignores them) or non-finite values
    (a merge would write a model of NaNs and succeed): :class:`AdapterTensorError` naming the file and key."""
    with safe_open(str(weights_file), framework="pt") as saved:
        extra = sorted(set(saved.keys()) - set(expected))
        if extra:
            raise AdapterTensorError(f"{weights_file} holds {len(extra)} tensors the adapter's model does not have "
                                     f"(first: {extra[0]!r}): not this adapter's weights, or edited")
        broken = [key for key in saved.keys()
                  if (tensor := saved.get_tensor(key)).is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise AdapterTensorError(f"{weights_file}: {len(broken)} tensors hold NaN or infinite values "
                                 f"(first: {broken[0]!r}); merging would write a non-finite model")


class AdapterTensorError(ValueError):
    """A saved adapter's tensors cannot be merged; the message names the file and the first bad key."""


def adapter_weights_file(adapter_dir: str | os.PathLike) -> Path:
    """The adapter's weights file: in the directory, or fetched (into the Hub cache PEFT reads) for a Hub id."""
    local = Path(adapter_dir)
    if not local.is_dir():
        return Path(hf_hub_download(str(adapter_dir), ADAPTER_WEIGHTS[0]))
    for name in ADAPTER_WEIGHTS:
        if (local / name).is_file():
            return local / name
    raise FileNotFoundError(f"{adapter_dir} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")


def saved_shapes(weights_file: str | os.PathLike) -> dict[str, list[int]]:
    """Every tensor's shape in a safetensors file, from its header: no tensor is read or allocated."""
    with safe_open(str(weights_file), framework="pt") as weights:
        return {key: weights.get_slice(key).get_shape() for key in weights.keys()}


@dataclass
class _GrownTensor:
    """One grown tensor: where the operator puts it and every parameter name that shares it."""

    kind: str  # "shared" or "layers"
    path: str
    layer: int | None
    names: tuple[str, ...]

    def select(self, weights: TransformerWeights) -> torch.Tensor:
        return weights.shared[self.path] if self.kind == "shared" else weights.layers[self.path][0]


@dataclass
class _GrowthPlan:
    """What building the target needs from a grown ``PeftModel``, and nothing that keeps it alive."""

    operator: LiGOOperator
    model_class: type[PreTrainedModel]
    config: PretrainedConfig
    grown: list[_GrownTensor]
    own_state: dict[str, torch.Tensor]  # the target's own parameters: heads, pooler ...

    @classmethod
    def of(cls, model: PeftModel) -> _GrowthPlan:
        tuner = model.base_model
        target = tuner.model
        module_names = {id(module): name for name, module in target.named_modules()}
        grown = [
            _GrownTensor(
                slot.kind,
                slot.path,
                slot.layer,
                tuple(f"{module_names[id(module)]}.{attr}".lstrip(".") for module, attr in slot.owners),
            )
            for slot in tuner.grown_slots()
        ]
        prefix = "base_model.model."
        own_state = {
            key.removeprefix(prefix): value.detach()
            for key, value in get_peft_model_state_dict(model).items()
            if ".ligo_operator." not in key
        }
        return cls(tuner.operator, type(target), target.config, grown, own_state)

    def skeleton(self, dtype: torch.dtype) -> PreTrainedModel:
        """The target on the meta device (buffers real, in ``dtype``): names, ties and config, no weights."""
        with init_empty_weights(include_buffers=False):
            model = self.model_class(self.config)
        return model.to(dtype)  # meta parameters just change their dtype

    def pieces(
        self, model: PreTrainedModel, names: set[str], checkpoint_dtype: torch.dtype, progressbar: bool
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The state dict of ``model`` restricted to ``names``, one piece at a time: first the target's own
        tensors (heads, persistent buffers), then each block as the operator grows it in ``checkpoint_dtype``."""
        own = {name: value for name, value in self.own_state.items() if name in names}
        buffers = {name: value for name, value in model.state_dict().items() if name in names and value.device.type != "meta"}
        yield {**buffers, **own}
        for layer, grown in self.operator.grow_blockwise(progressbar, dtype=checkpoint_dtype):
            yield {
                name: tensor.select(grown)
                for tensor in self.grown
                if tensor.layer == layer
                for name in tensor.names
                if name in names
            }


def merge_adapter(
    adapter_dir: str | os.PathLike,
    *,
    sources: Sequence[str | os.PathLike] | None = None,
    dtype: torch.dtype | str | None = None,
    device_map: DeviceMap = None,
    max_memory: dict[int | str, int | str] | None = None,
    offload_folder: str | os.PathLike | None = None,
    progressbar: bool = False,
) -> PreTrainedModel:
    """Build the grown target of an adapter directory as a plain transformers model, in low memory.

    Peak memory is one target (plus the sources and the operator), never two: the adapter's
    ``PeftModel`` is dropped before the target is built block by block. ``dtype`` casts every
    tensor as it is produced. ``device_map`` is a device (``"cuda:0"``), a dict like transformers'
    ``device_map``, or one of ``"auto"``/``"balanced"``/``"balanced_low_0"``/``"sequential"`` (with
    ``max_memory``); modules mapped to ``"disk"`` are written to ``offload_folder`` and the result is
    dispatched with accelerate's hooks, so it can be evaluated and saved like a ``from_pretrained``
    model loaded with the same ``device_map``.
    """
    plan = _GrowthPlan.of(load_grown(adapter_dir, sources=sources))
    gc.collect()  # the PeftModel's forward hooks form a cycle with its tuner; free its grown copy now
    return _build(plan, dtype, device_map, max_memory, offload_folder, progressbar)


def _build(
    plan: _GrowthPlan,
    dtype: torch.dtype | str | None,
    device_map: DeviceMap,
    max_memory: dict[int | str, int | str] | None,
    offload_folder: str | os.PathLike | None,
    progressbar: bool,
) -> PreTrainedModel:
    dtype = resolve_dtype(dtype) or plan.operator.dtype
    model = plan.skeleton(dtype)
    resolved_map = _resolve_device_map(model, device_map, max_memory, dtype)
    placement = expand_device_map(resolved_map or {"": "cpu"}, [name for name, _ in model.named_parameters()])
    offload_index: dict = {}
    if "disk" in placement.values():
        if offload_folder is None:
            raise ValueError("the device_map offloads modules to disk: give an offload folder")
        Path(offload_folder).mkdir(parents=True, exist_ok=True)

    def assign(name: str, value: torch.Tensor) -> None:
        device = placement.get(name, "cpu")
        value = value.to(dtype) if value.is_floating_point() else value
        if device == "disk":
            offload_weight(value, name, str(offload_folder), index=offload_index)
        else:
            set_module_tensor_to_device(model, name, device, value=value)

    for name, value in plan.own_state.items():
        assign(name, value)
    for layer, grown in plan.operator.grow_blockwise(progressbar, dtype=dtype):
        for tensor in plan.grown:
            if tensor.layer == layer:
                assign(tensor.names[0], tensor.select(grown))  # tied owners follow via tie_weights()
        del grown
    model.tie_weights()
    if offload_index:
        save_offload_index(offload_index, str(offload_folder))
    if resolved_map is not None:
        dispatch_model(model, resolved_map, offload_dir=offload_folder, offload_index=offload_index or None)
        model.hf_device_map = resolved_map
    unset = [name for name, param in model.named_parameters() if param.device.type == "meta"]
    unset = [name for name in unset if placement.get(name) != "disk"]
    if unset:
        raise RuntimeError(f"the adapter and the operator leave target parameters unset: {unset[:5]}")
    model.eval()
    return model


def _resolve_device_map(
    model: PreTrainedModel, device_map: DeviceMap, max_memory: dict | None, dtype: torch.dtype
) -> dict | None:
    """accelerate's placement for a string ``device_map``; a single device becomes ``{"": device}``."""
    if device_map is None or isinstance(device_map, dict):
        return device_map
    if device_map not in AUTO_DEVICE_MAPS:
        return {"": device_map}
    no_split = model._no_split_modules
    if device_map == "sequential":
        budget = get_max_memory(max_memory)
    else:
        budget = get_balanced_memory(
            model,
            max_memory,
            no_split_module_classes=no_split,
            dtype=dtype,
            low_zero=device_map == "balanced_low_0",
        )
    return infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split, dtype=dtype)


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16``; a clear error for anything else."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}") from None


def save_processor(
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    sources: Sequence[str | os.PathLike] | None = None,
) -> str | None:
    """Save the tokenizer/image processor of the adapter dir or, failing that, of the first local source.

    Returns where it came from, or None when neither has one (a Hub source is not fetched here).
    """
    config = read_ligo_config(adapter_dir, sources)
    for candidate in (str(adapter_dir), *config.source_paths):
        if any((Path(candidate) / name).is_file() for name in PROCESSOR_FILES):
            AutoProcessor.from_pretrained(candidate).save_pretrained(output_dir)
            return candidate
    return None


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Refuse, before any work, an output directory that cannot be one: an existing file, or under one.

    transformers' ``save_pretrained`` only logs an error for a file and returns, so a merge into one
    would report success and write nothing.
    """
    path = Path(output_dir)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if candidate.is_dir():
                return
            if candidate == path:
                raise NotADirectoryError(f"{path} exists and is not a directory: the model cannot be written there")
            raise NotADirectoryError(f"{path} cannot be created: {candidate} is not a directory")


def write_merged(
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    sources: Sequence[str | os.PathLike] | None = None,
    dtype: torch.dtype | str | None = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    progressbar: bool = False,
) -> Path:
    """Write what ``merge_adapter(...).save_pretrained(output_dir)`` writes, without ever holding the target.

    The checkpoint's layout (names, shapes, dtypes, shards) comes from the target's meta skeleton;
    each block is then grown in the checkpoint's dtype, written to its place and dropped
    (:class:`StreamedCheckpoint`), so peak memory is the sources, the operator and one block; the
    largest, the word-embedding table, is grown by rows straight into that dtype.
    Tied parameters are written once, under the name transformers keeps on save, so ``from_pretrained``
    re-ties them. Returns the directory.
    """
    check_output_dir(output_dir)
    plan = _GrowthPlan.of(load_grown(adapter_dir, sources=sources))
    gc.collect()  # the PeftModel's forward hooks form a cycle with its tuner; free its grown copy now
    dtype = resolve_dtype(dtype) or plan.operator.dtype
    model = plan.skeleton(dtype)
    model.tie_weights()
    kept = remove_tied_weights_from_state_dict(model.state_dict(), model)
    layout = {name: (tuple(value.shape), value.dtype) for name, value in kept.items()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with StreamedCheckpoint(out, layout, max_shard_size) as checkpoint:
        for piece in plan.pieces(model, set(layout), dtype, progressbar):
            for name, value in piece.items():
                checkpoint.write(name, value)
    model.config.dtype = str(dtype).removeprefix("torch.")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    if model.can_generate():
        model.generation_config.save_pretrained(out)
    return out


def export_merged(adapter_dir: str | os.PathLike, output_dir: str | os.PathLike, **merge_options: Any) -> Path:
    """``fedgrow merge``: write the grown model (and the tokenizer/processor) as a plain model directory.

    ``merge_options`` are :func:`merge_adapter`'s (sources, dtype, device_map, ...). Without a device
    map the target is streamed to disk block by block (:func:`write_merged`); with one it is built in
    place and saved. The directory loads with ``AutoModelFor*.from_pretrained`` and needs no fedgrow
    import. Returns the directory.
    """
    if merge_options.get("device_map") is None and merge_options.get("offload_folder") is None:
        streamed = ("sources", "dtype", "progressbar")
        write_merged(adapter_dir, output_dir, **{key: merge_options[key] for key in streamed if key in merge_options})
    else:
        check_output_dir(output_dir)  # before the target is built (write_merged checks it itself)
        merge_adapter(adapter_dir, **merge_options).save_pretrained(output_dir)
    save_processor(adapter_dir, output_dir, merge_options.get("sources"))
    return Path(output_dir)
