"""Command-line plumbing shared by the growth examples; the growth itself is ``fedgrow_hf.recipe.grow_and_train``.

The recipe runs both LiGO phases with ``transformers.Trainer`` (the operator, then the merged model),
evaluates, and writes the model, the adapter, ``eval_results.json`` and the cards. ``Trainer`` runs on
``accelerate``'s ``Accelerator``, so the same script runs on the CPU, one GPU or several
(``accelerate launch``, DDP), in mixed precision with ``--bf16``; nothing here is device code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import PartialState
from transformers import PretrainedConfig

from fedgrow_hf.recipe import GrowthResult, TrainingSchedule, grow_and_train


def add_training_arguments(parser: argparse.ArgumentParser, target: str) -> None:
    parser.add_argument(
        "--target", default=target, help="target shape as LAYERS,HIDDEN,HEADS,FFN (default: %(default)s)"
    )
    parser.add_argument("--ligo-steps", type=int, default=100, help="operator training steps (phase 1)")
    parser.add_argument("--finetune-steps", type=int, default=200, help="fine-tuning steps of the merged model")
    parser.add_argument("--batch-size", type=int, default=16, help="per-device batch size")
    parser.add_argument("--ligo-lr", type=float, default=1e-3, help="learning rate of the operator")
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate of the fine-tuning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (Trainer/accelerate)")
    parser.add_argument(
        "--output-dir", default="runs/grow", help="model, ligo_adapter/, eval_results.json and cards"
    )
    parser.add_argument(
        "--hash-file",
        default=None,
        help="every process writes the SHA-256 of its final weights to FILE.rank<N>",
    )


def target_shape(text: str) -> dict[str, int]:
    layers, hidden, heads, ffn = (int(part) for part in text.split(","))
    return {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
    }


def training_schedule(args: argparse.Namespace) -> TrainingSchedule:
    return TrainingSchedule(
        operator_steps=args.ligo_steps,
        operator_learning_rate=args.ligo_lr,
        finetune_steps=args.finetune_steps,
        finetune_learning_rate=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        bf16=args.bf16,
    )


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters (names and float32 bytes): equal digests, equal models."""
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_digest(hash_file: str, model: torch.nn.Module) -> None:
    """This process's rank, the number of processes and ``model``'s digest, to ``hash_file.rank<N>``."""
    state = PartialState()
    record = {"rank": state.process_index, "world_size": state.num_processes, "sha256": weights_digest(model)}
    Path(f"{hash_file}.rank{state.process_index}").write_text(json.dumps(record) + "\n")


def grow_and_report(
    source: str,
    target: PretrainedConfig,
    train: datasets.Dataset,
    evaluation: datasets.Dataset,
    processor: Any,
    args: argparse.Namespace,
) -> GrowthResult:
    """``grow_and_train`` with the command line's schedule and output directory; then the digest, if asked
    for, and both phases' accuracy."""
    result = grow_and_train(
        source, target, train, evaluation, output_dir=args.output_dir, schedule=training_schedule(args),
        processor=processor,
    )
    if args.hash_file:
        write_digest(args.hash_file, result.model)
    print(f"accuracy after the operator phase: {result.operator_metrics['accuracy']:.4f}, "
          f"of the fine-tuned grown model: {result.metrics['accuracy']:.4f}")
    return result
