"""``LiGOModel``: the PEFT tuner that makes a target transformer's weights the output of a LiGO operator.

Where LoRA adds a small trainable delta to frozen weights, LiGO *replaces* the target's growable
weights (embeddings, attention, FFN, LayerNorms -- whatever the architecture's role table lists) by
functions of frozen source weights: ``target = Operator(source)``. Each growable weight becomes a
``torch.nn.utils.parametrize`` parametrization that reads the operator's output, computed with autograd
so that gradients reach the operator; the operator runs once per forward pass (:mod:`.grown`).
Everything else about the target (task heads, buffers, config) is the target's own, as with any PEFT
method.

``merge_and_unload()`` grows the weights one target block at a time and gives them back to the
target as ordinary parameters, so the result is a plain transformers model.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _is_key_under_prefixes
from peft.utils.other import AuxiliaryTrainingWrapper, set_additional_trainable_modules
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ...architectures import ArchitectureTable, Side, get_architecture_table
from .config import LiGOConfig
from .grown import (
    GrownSlot,
    GrownWeights,
    grown_stand_in,
    is_grown_stand_in,
    parametrize_grown,
    unparametrize_grown,
)
from .layer import GrowthStage, LiGOOperator, SourceWeights, SourceWidthMap, stage_seed
from .shapes import GrowthShapeError, ModelShape, TransformerWeights

logger = logging.getLogger(__name__)


class GlobalStateError(ValueError):
    """A Global-LiGO state dict does not fit this model (keys, shapes, dtypes or non-finite values)."""


class LosslessGrowthWarning(UserWarning):
    """The grown model will not start by computing its source's function; the message names the cause."""


class ArchitectureMismatchError(ValueError):
    """A source model cannot be grown into the target (other family, or fixed fields differ)."""


class LiGOModel(BaseTuner):
    """Wraps a target ``PreTrainedModel`` whose growable weights are produced by a (Dual-)LiGO operator.

    Use it like any PEFT method::

        config = LiGOConfig(source_model_name_or_path="sentence-transformers/all-MiniLM-L6-v2",
                            modules_to_save=["classifier"])
        model = get_peft_model(BertForSequenceClassification(target_config), config)

    Sources are loaded with the architecture's auto class (``AutoModel``; ``AutoModelForCausalLM`` for a
    decoder, whose head is grown too). ``fedgrow_hf.grow`` can hand over source models already in memory instead, and builds the target skeleton without allocating its weights.
    One LiGO adapter per model: a second operator would have no weights of its own to act on.
    """

    prefix: str = "ligo_"
    tuner_layer_cls = BaseTunerLayer  # LiGO injects no per-module layers; its state is the operator
    target_module_mapping: dict[str, list[str]] = {}
    uses_shared_state = True

    def _pre_injection_hook(self, model: nn.Module, config: LiGOConfig, adapter_name: str) -> None:
        self._slots: list[GrownSlot] = []
        self._grown: GrownWeights | None = None
        self._hook_handles: list[torch.utils.hooks.RemovableHandle] = []
        self._forward_depth = 0
        self._lookup_table: str | None = None
        self._pass_lookup: tuple[torch.Tensor, torch.Tensor] | None = None  # this pass's input_ids, and their rows' places
        self._source_width_maps: tuple[SourceWidthMap, ...] = ()  # what a training pass runs at the source's width
        self._cached_key: tuple | None = None
        self._cached_weights: TransformerWeights | None = None

    def _create_and_replace(self, *args, **kwargs) -> None:
        raise NotImplementedError("LiGO replaces no modules; the operator is built in LiGOModel.inject_adapter")

    # ----------------------------------------------------------------------------------------------
    # building
    # ----------------------------------------------------------------------------------------------
    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if getattr(self, "ligo_operator", None) is not None:
            raise ValueError(
                f"this model already has the LiGO adapter {list(self.ligo_operator)}; a grown model has exactly one"
            )
        config: LiGOConfig = self.peft_config[adapter_name]
        if not isinstance(model, PreTrainedModel):
            raise TypeError(f"LiGO needs a transformers PreTrainedModel as target, got {type(model).__name__}")
        table = get_architecture_table(model.config)
        if config.target_config is None:
            config.target_config = model.config.to_diff_dict()
        config.source_model_name_or_path = _absolute_if_local(config.source_model_name_or_path)
        loaded = self._load_sources(config, table, model)
        for source in loaded:
            _check_same_family(source, model, table)
        model.tie_weights()  # a skeleton built on the meta device is not tied yet; grown tensors must be shared
        target_base = _table_root(table, model, "target")
        sources = [_table_root(table, source, "source") for source in loaded]

        shared_names, layer_names = _growable_names(table, target_base, sources)
        head_names = _grown_head_names(config, table, model, loaded)
        if config.grow_heads or config.grown_heads is not None:
            config.grown_heads = sorted({name.rsplit(".", 1)[0] for name in head_names})
            # a grown head is the operator's output: a trainable copy of it would be one the forward never reads
            if config.modules_to_save:
                config.modules_to_save = [name for name in config.modules_to_save if name not in config.grown_heads]
        device = _first_real_device(model)
        source_weights = [
            SourceWeights(
                TransformerWeights.from_base_model(source, table, shared_names, layer_names, whole, head_names),
                ModelShape.from_config(source.config, table),
                source.config.name_or_path or type(source).__name__,
            )
            for source, whole in zip(sources, loaded, strict=True)
        ]
        intermediate = (
            ModelShape.from_config(config.intermediate_config, table) if config.intermediate_config else None
        )
        operator = LiGOOperator(
            table, source_weights, ModelShape.from_config(model.config, table), intermediate, config.width_structure,
            config.width_step,
        )
        operator.reset_parameters(config.width_init, config.depth_init, config.init_noise_std, config.init_seed)
        obstacles = operator.lossless_obstacles(config.width_init, config.depth_init)
        obstacles += _index_obstacles(table, model.config, operator) + _tying_obstacles(table, target_base, sources)
        for reason in obstacles:
            warnings.warn(f"LiGO growth is not lossless: {reason}", LosslessGrowthWarning, stacklevel=2)
        self.ligo_operator = nn.ModuleDict({adapter_name: operator.to(device)})
        blocks = target_base.get_submodule(table.layers_path)
        self._source_width_maps = _usable_source_width_maps(operator.global_stage, layer_names, blocks[0]) if len(blocks) else ()

        self._slots = _take_grown_slots(model, target_base, table, shared_names, layer_names, device, head_names)
        # Heads left on the meta device are initialised while the grown weights are storage-free stand-ins,
        # so that an initialiser can never write into a grown (possibly tied) tensor.
        materialize_meta_parameters(model, device)
        self._check_grown_shapes()
        self._grown = GrownWeights(self._slots, self._grown_weights)
        self._lookup_table = _input_lookup_table(model, self._slots, operator.global_stage)
        parametrize_grown(self._slots, self._grown)
        self._hook_handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            model.register_forward_hook(self._after_forward, with_kwargs=True, always_call=True),
        ]
        if self._lookup_table is not None:
            self._hook_handles.append(
                model.get_input_embeddings().register_forward_pre_hook(self._compact_lookup, with_kwargs=True)
            )
        for block, source_width_map in itertools.product(blocks, self._source_width_maps):
            module = block.get_submodule(source_width_map.module)
            slots = tuple(index for index, slot in enumerate(self._slots) if any(owner is module for owner, _ in slot.owners))
            weight = next(index for index in slots if self._slots[index].path == f"{source_width_map.module}.weight")
            self._hook_handles += [
                module.register_forward_pre_hook(
                    functools.partial(self._enter_source_width, source_width_map, weight, slots), with_kwargs=True),
                module.register_forward_hook(
                    functools.partial(self._leave_source_width, source_width_map, weight, slots), always_call=True),
            ]

        self._mark_only_adapters_as_trainable(model)
        set_additional_trainable_modules(
            model=model,
            peft_config=config,
            model_config=BaseTuner.get_model_config(self),
            adapter_name=adapter_name,
            activate_adapter=adapter_name in self.active_adapters,
        )
        for stage in operator.local_stages or []:
            stage.requires_grad_(config.train_local and not config.inference_mode)
        operator.global_stage.requires_grad_(config.train_global and not config.inference_mode)

    def _load_sources(self, config: LiGOConfig, table: ArchitectureTable, target: nn.Module) -> list[PreTrainedModel]:
        handed_over = config.take_source_models()
        if handed_over is not None:
            return handed_over
        if not config.source_paths:
            raise ValueError("LiGOConfig.source_model_name_or_path is not set: there is nothing to grow from")
        with_head = type(target) if config.grown_heads or (config.grown_heads is None and config.grow_heads) else None
        models = []
        for path in config.source_paths:
            try:
                models.append(load_source_model(path, table, config.source_revision, with_head))
            except (OSError, ValueError) as error:
                reason = (str(error).splitlines() or [type(error).__name__])[0]
                raise OSError(
                    f"cannot load the LiGO source model {path!r}: {reason} (an adapter saved without "
                    "record_source_paths names a local source without its path: give its location, e.g. "
                    "fedgrow merge --source DIR or load_grown(..., sources=[DIR]))"
                ) from error
        return models

    # ----------------------------------------------------------------------------------------------
    # forward: one operator run per forward pass, read by every grown weight's parametrization
    # ----------------------------------------------------------------------------------------------
    @property
    def operator(self) -> LiGOOperator:
        return self.ligo_operator[self.active_adapters[0]]

    def _grown_weights(
        self, rows: Mapping[str, torch.Tensor], at_source_width: Collection[tuple[str, int]]
    ) -> TransformerWeights:
        """Run the operator (only ``rows`` of the lookup tables it names, ``at_source_width`` axes left unexpanded);
        in no-grad mode reuse the last whole result while the operator is unchanged (both are then empty: see
        :meth:`_before_forward`)."""
        if torch.is_grad_enabled():
            self._cached_key = self._cached_weights = None
            return self.operator(rows=rows, at_source_width=at_source_width)
        params = list(self.operator.parameters())
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if key != self._cached_key:
            self._cached_weights, self._cached_key = self.operator(), key
        return self._cached_weights

    @torch.no_grad()
    def _check_grown_shapes(self) -> None:
        """Grow the shared tensors and the first block on the meta device, and compare with the target's slots.

        Every block has the same shapes, so this checks the whole operator; on the meta device it
        computes shapes only, so loading an adapter never allocates a grown tensor (a real grown
        word-embedding table alone would be the largest allocation of a streamed merge). The operator
        first runs at the first forward pass, or when a grown weight is read before one.
        """
        on_meta = {name: tensor.to("meta") for name, tensor in _parameters_and_buffers(self.operator)}
        sample = torch.func.functional_call(self.operator, on_meta, kwargs={"layers": [0]})
        blocks = sample.unbind_layers()
        for slot in self._slots:
            grown = sample.shared[slot.path] if slot.kind == "shared" else blocks[slot.path][0]
            if grown.shape != slot.shape:
                raise GrowthShapeError(
                    f"the operator grows {slot.path} to {tuple(grown.shape)} but the target has {tuple(slot.shape)}"
                )

    def _before_forward(self, module: PreTrainedModel, args: tuple, kwargs: dict) -> None:
        """Grow the target once for the outermost forward pass. With gradients on, the word-embedding table
        is grown only at the batch's token ids (:meth:`LiGOOperator.forward`) and the linear maps that cost
        less through the source's width run through it (:class:`.layer.SourceWidthMap`); without gradients
        the whole result is cached across passes instead (:meth:`_grown_weights`).

        The factors stay until the next pass, with the weights the pass read at the source's width
        (:meth:`GrownWeights.refresh`): activation checkpointing recomputes blocks in backward, after the pass."""
        self._forward_depth += 1
        if self._forward_depth != 1:
            return
        training = torch.is_grad_enabled()
        maps = self._source_width_maps if training else ()
        at_source_width = [pair for source_width_map in maps for pair in source_width_map.tensors]
        # single-group factors, folded into their unit matrix (GrowthStage.factors)
        factors = self.operator.global_stage.factors(keys={source_width_map.factor for source_width_map in maps})
        self._grown.refresh(self._lookup_rows(args, kwargs) if training else None, at_source_width,
                            {key: unit for key, (_, unit) in factors.items()})

    def _lookup_rows(self, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        """The rows of the input-embedding table this pass reads: its ``input_ids``, once each (sorted), with
        each id's place among them kept for :meth:`_compact_lookup`."""
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if self._lookup_table is None or not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point():
            return {}
        rows, places = input_ids.unique(return_inverse=True)
        self._pass_lookup = (input_ids, places)
        return {self._lookup_table: rows.to(self.operator.global_stage.depth.device)}

    def _compact_lookup(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """In a pass that grew only its tokens' rows, look them up by their places among those rows.

        The grown table then holds those rows alone, in order: scattering them into a zero table of the whole
        vocabulary cost that table and, in backward, its full-size gradient every step (62.5 MB each for BERT
        L8/H512). Token ids other than the pass's own find no row, so they are refused.
        """
        if self._pass_lookup is None:
            return None
        input_ids, places = self._pass_lookup
        ids = _module_input(module, args, kwargs)
        if ids is not input_ids and not (ids.numel() == input_ids.numel() and torch.equal(ids.reshape(-1), input_ids.reshape(-1))):
            raise RuntimeError(
                f"{type(module).__name__} looked up token ids other than this forward pass's input_ids, but LiGO grew only "
                "their rows of the table: pass every id the model embeds as input_ids"
            )
        return _with_module_input(args, kwargs, places.reshape(ids.shape).to(ids.device))

    def _enter_source_width(
        self, source_width_map: SourceWidthMap, weight: int, slots: Sequence[int], module: nn.Module, args: tuple,
        kwargs: dict,
    ) -> tuple[tuple, dict] | None:
        """Pre-hook of a block's linear map that a training pass runs through the source's width
        (:class:`.layer.SourceWidthMap`; ``weight`` and ``slots``: its weight's slot and all of its own): its reads
        of its weights are its own from here (it reads them at the source's width where they were grown so,
        :meth:`GrownWeights.enter`), and on the input side its input is multiplied by the factor the operator
        left out of its weight (given by position or, alone, by name)."""
        self._grown.enter(slots)
        if source_width_map.side is not Side.IN or not self._grown.narrowed(weight):
            return None
        x = _module_input(module, args, kwargs)  # (if it raises, the forward hook, always called, leaves)
        return _with_module_input(args, kwargs, x @ self._grown.factor(source_width_map.factor).to(x.device, x.dtype))

    def _leave_source_width(
        self, source_width_map: SourceWidthMap, weight: int, slots: Sequence[int], module: nn.Module, args: tuple,
        output: object,
    ) -> torch.Tensor | None:
        """Forward hook (called even when the module or its pre-hooks fail) of such a map: on the output side, its
        output (bias included, grown at the source's width too) is multiplied by the factor's transpose."""
        self._grown.leave(slots)
        if source_width_map.side is not Side.OUT or not self._grown.narrowed(weight) or not isinstance(output, torch.Tensor):
            return None
        return output @ self._grown.factor(source_width_map.factor).to(output.device, output.dtype).T

    def _after_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        self._forward_depth -= 1
        if self._forward_depth == 0:
            self._pass_lookup = None
            self._grown.end_pass()

    # ----------------------------------------------------------------------------------------------
    # Dual-LiGO state exchange (Fed-Grow)
    # ----------------------------------------------------------------------------------------------
    def global_state_dict(self) -> dict[str, torch.Tensor]:
        """The shared Global-LiGO stage: the only state a Fed-Grow participant ever sends.

        Keys and shapes depend only on the intermediate and target configs, never on the source.
        """
        return {key: value.detach().clone() for key, value in self.operator.global_stage.state_dict().items()}

    def source_width_maps(self) -> tuple[SourceWidthMap, ...]:
        """The block maps a training pass runs through the source's width (:class:`.layer.SourceWidthMap`), in every
        block."""
        return self._source_width_maps

    def grown_slots(self) -> tuple[GrownSlot, ...]:
        """Where each grown tensor goes in the target: what an exporter needs to build the target as a
        plain model without this tuner (:mod:`fedgrow_hf.export`)."""
        return tuple(self._slots)

    @property
    def is_dual_ligo(self) -> bool:
        """Whether the operator has Local stages (Dual-LiGO), i.e. a Global stage that can be shared."""
        return self.operator.local_stages is not None

    def global_parameters(self) -> list[nn.Parameter]:
        """The Global-LiGO stage's parameters: what a federation shares (and counts as shared)."""
        return list(self.operator.global_stage.parameters())

    def local_parameters(self) -> list[nn.Parameter]:
        """The Local-LiGO stages' parameters (none for plain LiGO): private to the party, trained or fixed."""
        return [param for stage in self.operator.local_stages or [] for param in stage.parameters()]

    def train_local_stages(self, enabled: bool) -> None:
        """Train the Local-LiGO stages or keep them fixed (Fed-Grow's ``local_ligo_rounds``)."""
        for stage in self.operator.local_stages or []:
            stage.requires_grad_(enabled)

    def intermediate_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights the Global stage grows from (the party's intermediate model: its Local-LiGO applied to its
        source), as one flat dict (:meth:`TransformerWeights.to_state_dict`). Sending it shares a model: only
        the ``share_intermediate`` variant of Fed-Grow does."""
        with torch.no_grad():
            weights = self.operator.intermediate_weights()
        return {key: value.detach().cpu().clone() for key, value in weights.to_state_dict().items()}

    def pin_intermediate(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Grow from ``state_dict`` (the form of :meth:`intermediate_state_dict`, e.g. an average of several
        parties') instead of this party's Local-LiGO output; checked like a Global-LiGO state first."""
        check_state_dict(self.intermediate_state_dict(), state_dict, "intermediate")
        self.operator.pin_intermediate(TransformerWeights.from_state_dict(state_dict))

    @property
    def has_pinned_intermediate(self) -> bool:
        return self.operator.shared_intermediate is not None

    def local_state_dict(self) -> dict[str, torch.Tensor]:
        """The private Local-LiGO stage(s); empty for plain LiGO."""
        if self.operator.local_stages is None:
            return {}
        return {key: value.detach().clone() for key, value in self.operator.local_stages.state_dict().items()}

    def load_global_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Validate a received Global-LiGO state, then load it; on any problem nothing is changed."""
        validate_global_state(self.operator.global_stage, state_dict)
        with torch.no_grad():
            for key, param in self.operator.global_stage.state_dict(keep_vars=True).items():
                param.copy_(torch.as_tensor(state_dict[key]))

    # ----------------------------------------------------------------------------------------------
    # merging
    # ----------------------------------------------------------------------------------------------
    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        if not merge:
            raise ValueError(
                "a LiGO target has no weights of its own (they are the operator's output): use merge_and_unload()"
            )
        self._release_grown_weights()  # so that merging never holds two copies of the target
        for layer, grown in self.operator.grow_blockwise(progressbar, consume=True):  # the operator goes below
            self._materialize(grown, layer, safe_merge)
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles, self._slots, self._grown = [], [], None
        del self.ligo_operator
        return super()._unload_and_optionally_merge(merge=False, progressbar=progressbar)

    def _release_grown_weights(self) -> None:
        self._cached_weights = self._cached_key = None
        self._grown.clear()

    def _materialize(self, weights: TransformerWeights, layer: int | None, safe_merge: bool) -> None:
        """Give one block's (or the shared) grown tensors, all or some of them, back to the target as its
        parameters.

        The grown tensor's own storage becomes the parameter's (no copy): the merged model is the only
        thing a merge allocates, and the operator's output is gone once the caller drops ``weights``.
        """
        blocks = weights.unbind_layers()
        for slot in self._slots:
            if slot.layer != layer or slot.path not in (weights.shared if slot.kind == "shared" else weights.layers):
                continue
            tensor = slot.select(weights, blocks, first_layer=layer or 0)
            if safe_merge and not torch.isfinite(tensor).all():
                raise ValueError(f"the grown weight {slot.path} (layer {layer}) has non-finite values")
            unparametrize_grown(slot, nn.Parameter(tensor))

    def disable_adapter_layers(self) -> None:
        raise ValueError("a LiGO model cannot run without its operator: the target's weights are its output")

    @classmethod
    def _get_adapter_state_dict(
        cls,
        model: nn.Module,
        config: LiGOConfig,
        adapter_name: str,
        state_dict: dict[str, torch.Tensor],
        unwanted_adapter_names: list[str],
    ) -> dict[str, torch.Tensor]:
        """The operator, plus the target's own parameters (task heads that growth does not produce).

        A randomly initialised head is part of the grown model as much as the operator is; saving it
        makes an adapter directory (with the source) determine the model exactly. Heads listed in
        ``modules_to_save`` are saved by PEFT's own wrapper, and source weights are buffers that no
        state dict contains.
        """
        selected = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        wrapped = {name for name, module in model.named_modules() if isinstance(module, AuxiliaryTrainingWrapper)}
        parameter_names = {name for name, param in model.named_parameters() if not is_grown_stand_in(param)}
        for key, value in state_dict.items():
            if key in parameter_names and ".ligo_operator." not in key and not _is_key_under_prefixes(key, wrapped):
                selected[key] = value
        return selected

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        return key.replace(f"ligo_operator.{adapter_name}.", "ligo_operator.")


def initial_global_stage(target: PretrainedConfig, config: LiGOConfig, num_local_stages: int = 1) -> GrowthStage:
    """The Global stage a Dual-LiGO party starts from, built without any source model.

    Its keys and shapes depend only on ``config.intermediate_config`` and the target, and its
    initialisation is the one :class:`LiGOOperator` gives a party with ``num_local_stages`` sources, so a
    federation's server can hand it out and validate updates against it.
    """
    if not config.intermediate_config:
        raise ValueError("a Global stage needs LiGOConfig.intermediate_config (Dual-LiGO's common shape)")
    table = get_architecture_table(target)
    intermediate = ModelShape.from_config(config.intermediate_config, table)
    stage = GrowthStage(table, intermediate, ModelShape.from_config(target, table), config.width_structure,
                        config.width_step)
    stage.reset_parameters(config.width_init, config.depth_init, config.init_noise_std,
                           stage_seed(config.init_seed, num_local_stages))
    return stage.requires_grad_(False)


def validate_global_state(stage: GrowthStage, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`GlobalStateError` naming the first offending key unless ``state_dict`` fits ``stage``."""
    check_state_dict(stage.state_dict(), state_dict, "Global-LiGO")


def check_state_dict(reference: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`GlobalStateError` (naming ``what`` and the first offending key) unless ``state_dict`` has
    exactly ``reference``'s keys, shapes and dtypes and finite values: the one check of a received, averaged or
    checkpointed state."""
    missing = sorted(set(reference) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(reference))
    if missing or unexpected:
        raise GlobalStateError(f"{what} keys do not match: missing {missing}, unexpected {unexpected}")
    for key, expected in reference.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            try:
                value = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as error:
                raise GlobalStateError(f"{what} key {key!r} is not an array: {type(value).__name__}") from error
        if tuple(value.shape) != tuple(expected.shape):
            raise GlobalStateError(f"{what} key {key!r} has shape {tuple(value.shape)}, expected {tuple(expected.shape)}")
        if value.dtype != expected.dtype:
            raise GlobalStateError(f"{what} key {key!r} has dtype {value.dtype}, expected {expected.dtype}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise GlobalStateError(f"{what} key {key!r} has non-finite values")


def _check_same_family(source: PreTrainedModel, target: PreTrainedModel, table: ArchitectureTable) -> None:
    name = source.config.name_or_path or type(source).__name__
    if source.config.model_type != table.model_type:
        raise ArchitectureMismatchError(
            f"source {name!r} is a {source.config.model_type!r} model but the target is {table.model_type!r}; "
            "LiGO grows a model within its own architecture family"
        )
    differing = {
        field: (getattr(source.config, field, None), getattr(target.config, field, None))
        for field in table.fixed_fields
        if getattr(source.config, field, None) != getattr(target.config, field, None)
    }
    if differing:
        raise ArchitectureMismatchError(
            f"source {name!r} and the target differ in fields growth cannot change (source, target): {differing}"
        )


def _table_root(table: ArchitectureTable, model: PreTrainedModel, what: str) -> nn.Module:
    """The module ``table``'s paths are relative to in ``model``; an error naming the class the table needs."""
    root = table.root_of(model)
    try:
        root.get_submodule(table.layers_path)
    except AttributeError:
        raise ArchitectureMismatchError(
            f"the {what} {type(model).__name__} has no {table.layers_path!r}: LiGO grows {table.model_type!r} models "
            f"as {table.auto_class.__name__} loads them (with their head)"
        ) from None
    return root


def _index_obstacles(table: ArchitectureTable, config: PretrainedConfig, operator: LiGOOperator) -> list[str]:
    """Why a deeper target cannot start exactly when the config makes blocks depend on their index."""
    flags = [name for name in table.index_dependent_fields if getattr(config, name, None)]
    if not flags or all(stage.target_shape.num_layers == stage.source_shape.num_layers for stage in operator.stages()):
        return []
    return [f"{flags} make a block's function depend on its index: the source blocks behind a new one do not "
            "compute what they did"]


def _tying_obstacles(table: ArchitectureTable, target: nn.Module, sources: list[nn.Module]) -> list[str]:
    """Why tying makes growth lossy: the target ties a grown weight (``lm_head``) to another one that a source
    keeps separate, so the grown model uses the other weight where the source used its own."""
    own = {name for name, _ in target.named_parameters()}
    every = [name for name, _ in target.named_parameters(remove_duplicate=False)]
    tied = [name for name in every if name in table.shared_axes and name not in own]
    reasons = []
    for source in sources:
        untied = [name for name in tied if name in {n for n, _ in source.named_parameters()}]
        if untied:
            name = source.config.name_or_path or type(source).__name__
            reasons.append(
                f"the target ties {untied} to other weights but source {name!r} does not (set tie_word_embeddings "
                "as the source has it)"
            )
    return reasons


def _module_input(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    """The input a pre-hook of a one-input module (an embedding, a linear map) rewrites: given by position or, alone,
    by name."""
    if args:
        return args[0]
    if len(kwargs) != 1:
        raise RuntimeError(f"{type(module).__name__} was called with arguments {sorted(kwargs)} and none by position: "
                           "LiGO's training pass cannot tell which one is its input")
    return next(iter(kwargs.values()))


def _with_module_input(args: tuple, kwargs: dict, value: torch.Tensor) -> tuple[tuple, dict]:
    """A pre-hook's ``(args, kwargs)`` with the input :func:`_module_input` took replaced by ``value``."""
    return ((value, *args[1:]), kwargs) if args else (args, dict.fromkeys(kwargs, value))


def _usable_source_width_maps(
    stage: GrowthStage, layer_names: Sequence[str], block: nn.Module
) -> tuple[SourceWidthMap, ...]:
    """``stage``'s :meth:`GrowthStage.source_width_maps` for a target whose first block is ``block`` (with its own
    parameters, before they are taken for growth): those whose weight is grown and whose module computes at the
    widths it is given, with only the tensors it has. ``nn.Linear`` takes both from its input and weight; GPT-2's
    ``Conv1D`` its input's alone (its output has the width it was built with). An output side also stays at
    full width where the module has a bias that is not grown (added at the target's width, before the hook
    widens the output)."""
    maps = []
    for source_width_map in stage.source_width_maps():
        module = block.get_submodule(source_width_map.module)
        widths_follow = (nn.Linear, Conv1D) if source_width_map.side is Side.IN else nn.Linear
        if f"{source_width_map.module}.weight" not in layer_names or not isinstance(module, widths_follow):
            continue
        own = dict(module.named_parameters(recurse=False))
        if source_width_map.side is Side.OUT and "bias" in own and f"{source_width_map.module}.bias" not in layer_names:
            continue
        tensors = tuple((name, axis) for name, axis in source_width_map.tensors if name in layer_names)
        maps.append(dataclasses.replace(source_width_map, tensors=tensors))
    return tuple(maps)


def _input_lookup_table(model: PreTrainedModel, slots: Sequence[GrownSlot], stage: GrowthStage) -> str | None:
    """The grown shared tensor that only the input embedding reads, by row (``input_ids``), if growth keeps
    its rows apart: a pass can grow just its tokens' rows. A table tied to an output head (an LM head
    reads every row) or read by any other module is grown whole."""
    embedding = model.get_input_embeddings()
    for slot in slots:
        if slot.kind == "shared" and all(owner is embedding and name == "weight" for owner, name in slot.owners):
            return slot.path if stage.keeps_rows(slot.path, len(slot.shape)) else None
    return None


def _growable_names(
    table: ArchitectureTable, target: nn.Module, sources: list[nn.Module]
) -> tuple[list[str], list[str]]:
    """The table's parameters to grow: those the target has (a tied head is grown as the weight it is tied to).

    Every source must have the target's block parameters. A tensor outside the blocks that a source
    lacks (a pooler dropped with ``add_pooling_layer=False``) stays the target's own, like a task head. A
    source's tied head counts as its own tensor: an untied target's head grows from it.
    """

    def present(module: nn.Module, candidates: Iterable[str], remove_duplicate: bool = True) -> list[str]:
        names = {name for name, _ in module.named_parameters(remove_duplicate=remove_duplicate)}
        return [name for name in candidates if name in names]

    def first_block(module: nn.Module) -> nn.Module:
        return module.get_submodule(table.layers_path)[0]

    shared = present(target, table.shared_axes)
    layers = present(first_block(target), table.layer_axes)
    for source in sources:
        name = source.config.name_or_path or type(source).__name__
        lacking = sorted(set(layers) - set(present(first_block(source), layers)))
        if lacking:
            raise ArchitectureMismatchError(f"source {name!r} lacks block parameters the target grows: {lacking}")
        kept = [path for path in shared if path not in present(source, shared, remove_duplicate=False)]
        if kept:
            logger.warning("source %r has no %s: the target keeps its own (trainable via modules_to_save)", name, kept)
            shared = [path for path in shared if path not in kept]
    return shared, layers


def _take_grown_slots(
    model: nn.Module,
    base: nn.Module,
    table: ArchitectureTable,
    shared_names: list[str],
    layer_names: list[str],
    device: torch.device,
    head_names: Sequence[str] = (),
) -> list[GrownSlot]:
    """Replace the grown parameters of the target (tied copies included) by stand-ins; record where they were.

    A stand-in stays on its parameter's device (``device`` for a skeleton's meta parameters), which is where
    the parametrization puts the grown tensor: a target placed with a ``device_map`` keeps its placement."""
    owners_by_param: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False, remove_duplicate=False):
            owners_by_param.setdefault(id(param), []).append((module, name))

    def take(kind: str, path: str, layer: int | None, param: nn.Parameter) -> GrownSlot:
        owners = tuple(owners_by_param[id(param)])
        stand_in = grown_stand_in(param, device if param.device.type == "meta" else param.device)
        for module, name in owners:
            module.register_parameter(name, stand_in)
        return GrownSlot(kind, path, layer, owners, param.shape)

    slots = [take("shared", name, None, base.get_parameter(name)) for name in shared_names]
    slots += [take("shared", name, None, model.get_parameter(name)) for name in head_names]
    for layer, block in enumerate(base.get_submodule(table.layers_path)):
        slots += [take("layers", name, layer, block.get_parameter(name)) for name in layer_names]
    return slots


def load_source_model(
    path: str, table: ArchitectureTable, revision: str | None = None, with_head: type[PreTrainedModel] | None = None
) -> PreTrainedModel:
    """A source checkpoint as the table's auto class loads it or, with ``with_head`` (a task model class, e.g.
    ``BertForSequenceClassification``), as that class with its trained head where the checkpoint has one (else
    its base model, what the auto class loads: transformers initialises a missing head at random, which growth
    must never copy)."""
    if with_head is None:
        return table.auto_class.from_pretrained(path, revision=revision)
    model, info = with_head.from_pretrained(path, revision=revision, output_loading_info=True)
    heads = tuple(f"{head}." for head in table.head_roles)
    return model.base_model if any(key.startswith(heads) for key in info["missing_keys"]) else model


def _grown_head_names(
    config: LiGOConfig, table: ArchitectureTable, target: nn.Module, sources: Sequence[nn.Module]
) -> list[str]:
    """The task-head parameters (paths in the whole model) grown from the sources' own heads: those of the heads
    an adapter records (``grown_heads``, on reload: every source must have them), or with ``grow_heads`` those
    every source has, as a model of the target's class, with the target's sizes on every axis growth does not widen
    (a classifier's labels); none otherwise."""
    head_axes = table.head_axes
    names_of = {head: [name for name in head_axes if name.startswith(f"{head}.")] for head in table.head_roles}

    def kept_dims(name: str, shape: torch.Size) -> list[int]:
        """The sizes growth does not change (a classifier's labels)."""
        grown_dims = {dim % len(shape) for dim in head_axes[name]}
        return [size for dim, size in enumerate(shape) if dim not in grown_dims]

    def has(source: nn.Module, head: str) -> bool:
        own = dict(source.named_parameters())
        return type(source).__name__ == type(target).__name__ and all(
            name in own and kept_dims(name, own[name].shape) == kept_dims(name, target.get_parameter(name).shape)
            for name in names_of[head])

    if config.grown_heads is not None:
        for head in config.grown_heads:
            lacking = [source.config.name_or_path or type(source).__name__ for source in sources if not has(source, head)]
            if lacking:
                raise ArchitectureMismatchError(
                    f"the adapter grows {head!r} from its sources' own, but {lacking} have none of the target's "
                    f"shape: give the {type(target).__name__} checkpoints it was grown from")
        return [name for head in config.grown_heads for name in names_of[head]]
    if not config.grow_heads:
        return []
    grown = []
    for head, names in names_of.items():
        if not hasattr(target, head):
            continue
        if all(has(source, head) for source in sources):
            grown += names
        else:
            logger.warning("not every source is a %s with a %r of the target's shape: the target's %r is its own "
                           "(trainable via modules_to_save)", type(target).__name__, head, head)
    return grown


def _parameters_and_buffers(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of ``module`` by name, non-persistent buffers included."""
    yield from module.named_parameters()
    yield from module.named_buffers()


def _absolute_if_local(paths: str | list[str] | None) -> str | list[str] | None:
    """Local source directories are recorded absolute, so a saved adapter loads from any directory.

    Hub ids are left as they are (a relative path that does not exist here is taken for one).
    """
    if paths is None:
        return None
    resolved = [str(Path(p).resolve()) if p and Path(p).is_dir() else p for p in ([paths] if isinstance(paths, str) else paths)]
    return resolved[0] if isinstance(paths, str) else resolved


def _first_real_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


def materialize_meta_parameters(model: PreTrainedModel, device: torch.device, within: nn.Module | None = None) -> None:
    """Allocate and initialise ``model``'s parameters left on the meta device (task heads of a skeleton), with the
    model's own initialiser; only those of ``within`` (one of its submodules) where given."""
    for module in (within or model).modules():
        if any(p.device.type == "meta" for p in module.parameters(recurse=False)):
            module.to_empty(device=device, recurse=False)
            for param in module.parameters(recurse=False):
                param._is_hf_initialized = False
            model._init_weights(module)
