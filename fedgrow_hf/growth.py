"""``grow``: one call from source checkpoint(s) and a target config to a trainable LiGO model."""

from __future__ import annotations

from typing import Any

from accelerate import init_empty_weights
from peft import PeftModel, get_peft_model
from transformers import PretrainedConfig, PreTrainedModel

from .architectures import get_architecture_table
from .tuners.ligo import LiGOConfig, load_source_model


def grow(
    source: str | PreTrainedModel | list[str | PreTrainedModel],
    target_config: PretrainedConfig,
    *,
    model_class: type[PreTrainedModel] | Any | None = None,
    intermediate_config: PretrainedConfig | dict[str, int] | None = None,
    **ligo_kwargs: Any,
) -> PeftModel:
    """Grow ``source`` (a Hub id, a local path, a loaded model, or a list of them) into ``target_config``.

    Paths and ids load with the architecture's auto class (``AutoModel``; ``AutoModelForCausalLM`` for a
    decoder), which also builds the target unless ``model_class`` is given; with ``grow_heads=True`` as
    ``model_class`` with their trained head where they have one, which the target's head is then grown from.
    The target skeleton (``model_class``, e.g. ``BertForSequenceClassification``) is built on the meta
    device: its growable weights are never allocated, because the operator produces them; only the
    parts growth does not produce (task heads) are materialised and initialised. Remaining keyword
    arguments go to :class:`LiGOConfig` (``modules_to_save``, ``depth_init``, ``task_type`` ...).
    """
    table = get_architecture_table(target_config)
    model_class = model_class or table.auto_class
    is_model_class = isinstance(model_class, type) and issubclass(model_class, PreTrainedModel)
    with_head = model_class if ligo_kwargs.get("grow_heads") and is_model_class else None
    sources = source if isinstance(source, list) else [source]
    models = [load_source_model(item, table, with_head=with_head) if isinstance(item, str) else item for item in sources]
    config = LiGOConfig(
        source_model_name_or_path=[_name_or_path(m) for m in models] if len(models) > 1 else _name_or_path(models[0]),
        intermediate_config=intermediate_config,
        source_models=models,
        **ligo_kwargs,
    )
    with init_empty_weights(include_buffers=False):
        target = model_class(target_config) if is_model_class else model_class.from_config(target_config)
    return get_peft_model(target, config)


def _name_or_path(model: PreTrainedModel) -> str | None:
    return model.config.name_or_path or None
