"""The comparison presets: one federation config each, in the schema of ``fedgrow simulate``.

Every method of the comparison (:mod:`.methods`) is derived from the same preset config, so the
parties, their sources, the data partition, the seeds and the hyper-parameters are identical across
methods. Data locations are not part of a preset: :func:`preset_config` takes the folder holding
``sst2/`` and ``mnist/`` (in this repository's CI that is ``../shared/data``).

Hyper-parameters (learning rates, batch size, steps) are shared by all methods; none were tuned per
method. Two learning rates are distinguished by *what* is trained, not by method: ``[training]``'s for
the LiGO operator (phase 1 of the growth methods) and ``finetune_learning_rate`` for full-model training
(phase 2 of every method and all of Fed-Scratch). ``vision-small``'s were set once. ``text-small``'s
full-model rate was changed once, for every method alike, after stopped runs at 5e-4 ended with every
method they measured predicting a single class for every party (see its comment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DISTILL_STEPS = 100  # derived text sources: short distillation from MiniLM, batch 16, lr 1e-4


@dataclass(frozen=True)
class Preset:
    """A named comparison: its federation config and what it is meant for."""

    name: str
    summary: str
    budget: str
    build: Callable[[Path], dict[str, Any]]


def _run(
    name: str, rounds: int, local_steps: int, round_timeout: int, finetune_learning_rate: float = 0.0,
    **sections: Any,
) -> dict[str, Any]:
    """A preset config: phase 2 is local fine-tuning for as many steps as one round. Party 0's source
    has the intermediate shape: it is the one every party gets in the same-source reference."""
    federation = {"rounds": rounds, "local_steps": local_steps, "phase2": "local", "finetune_steps": local_steps,
                  "finetune_learning_rate": finetune_learning_rate, "round_timeout": round_timeout}
    return {"name": name, "seed": 0, "federation": federation, **sections}


def _bert_shape(layers: int, hidden: int, heads: int, **extra: Any) -> dict[str, Any]:
    return {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
            "intermediate_size": 4 * hidden, **extra}


def _vit_shape(layers: int, heads: int, **extra: Any) -> dict[str, Any]:
    """A ViT shape with heads of 32 dims (what head-structured growth between the shapes needs); sources
    take the rest (patch size, image geometry) from the target."""
    return _bert_shape(layers, 32 * heads, heads, **extra)


def _tiny(data_dir: Path) -> dict[str, Any]:
    return _run(
        "tiny", 2, 4, 300,
        model={"family": "bert", "num_labels": 2, "target": _bert_shape(3, 48, 4, max_position_embeddings=64),
               "intermediate": _bert_shape(2, 32, 4)},
        data={"source": str(data_dir / "sst2"), "limit": 240, "partition": "dirichlet", "alpha": 5.0,
              "max_length": 24, "tokenizer": "minilm"},
        training={"learning_rate": 1e-3, "per_device_train_batch_size": 8},
        parties=[{"random": _bert_shape(2, 32, 4)}, {"random": _bert_shape(1, 16, 2)}],
    )


def _vision_small(data_dir: Path) -> dict[str, Any]:
    return _run(
        "vision-small", 6, 25, 1800,
        model={"family": "vit", "num_labels": 10, "target": _vit_shape(6, 6, patch_size=4),
               "intermediate": _vit_shape(4, 4)},
        data={"source": str(data_dir / "mnist"), "partition": "dirichlet", "alpha": 0.5, "image_size": 16,
              "num_channels": 1},
        training={"learning_rate": 5e-4, "per_device_train_batch_size": 32},
        parties=[{"pretrain": _vit_shape(4, 4, steps=150)}, {"pretrain": _vit_shape(3, 3, steps=150)},
                 {"pretrain": _vit_shape(2, 2, steps=150)}],
    )


def _text_small(data_dir: Path) -> dict[str, Any]:
    return _run(
        "text-small", 5, 20, 3600,
        model={"family": "bert", "num_labels": 2, "target": _bert_shape(8, 512, 8),
               "intermediate": _bert_shape(6, 384, 12)},
        data={"source": str(data_dir / "sst2"), "limit": 3000, "partition": "dirichlet", "alpha": 0.5,
              "max_length": 48},
        training={"learning_rate": 5e-4, "per_device_train_batch_size": 16},
        parties=[{"source": "minilm"}, {"derive": _derived(4, 256)}, {"derive": _derived(3, 192)}],
        # Full-model training (phase 2 of every method, all of Fed-Scratch) at 1e-4, the largest rate of
        # Turc et al.'s grid for small BERTs. Set after two stopped runs with 5e-4 for everything ended
        # with every method they measured predicting a single class for every party; it applies to all
        # methods alike.
        finetune_learning_rate=1e-4,
    )


def _derived(layers: int, hidden: int) -> dict[str, int]:
    """A BERT cut out of MiniLM (layer dropping + width pruning), then distilled from MiniLM for 100 steps
    on the party's own SST-2 training sentences (recipe: :mod:`fedgrow_hf.sources`)."""
    return {"num_hidden_layers": layers, "hidden_size": hidden, "distill_steps": DISTILL_STEPS}


def _paper(data_dir: Path) -> dict[str, Any]:
    """A GPU-scale text comparison: BERT-Base target (L12/H768), the full SST-2 train split, four parties.

    It scales ``text-small`` up towards the paper's setting; it does not claim to match the paper's
    exact models, datasets or budgets, which this offline project cannot fetch or check."""
    config = _text_small(data_dir)
    config.update(name="paper", training={"learning_rate": 2e-4, "per_device_train_batch_size": 32})
    config["federation"] = {"rounds": 20, "local_steps": 200, "phase2": "local", "finetune_steps": 1000,
                            "finetune_learning_rate": 5e-5, "round_timeout": 36000}
    config["model"]["target"] = _bert_shape(12, 768, 12)
    config["data"].update(limit=None, max_length=128)
    config["parties"].append({"derive": _derived(2, 128)})
    return config


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("tiny", "2 random tiny BERT sources -> BERT L3/H48, 240 real SST-2 sentences (test suite)",
               "a few minutes on 2 CPU cores", _tiny),
        Preset("vision-small", "3 tiny ViTs (L4/H128, L3/H96, L2/H64) pretrained on their own MNIST share "
               "-> ViT L6/H192, MNIST 8,000 training images, Dirichlet alpha 0.5",
               "under 30 minutes on 2 CPU cores", _vision_small),
        Preset("text-small", "all-MiniLM-L6-v2 + 2 BERTs derived from it (L4/H256, L3/H192; pruned, then distilled "
               f"{DISTILL_STEPS} steps on the party's own sentences) -> BERT L8/H512, "
               "3,000 SST-2 sentences, Dirichlet alpha 0.5", "under 60 minutes on 2 CPU cores", _text_small),
        Preset("paper", "GPU scale: MiniLM + 3 derived BERTs -> BERT-Base (L12/H768), full SST-2 train split, "
               "20 rounds",
               "a GPU machine; not run in CI", _paper),
    )
}


def preset_config(name: str, data_dir: str | Path) -> dict[str, Any]:
    """The federation config (a dict, ``FederationConfig.from_dict`` schema) of preset ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name].build(Path(data_dir))
