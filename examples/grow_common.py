"""The two stages shared by the growth examples, both run by ``transformers.Trainer``.

1. train the LiGO operator of a freshly grown model (the target's weights are the operator's output);
2. merge it into a plain model and fine-tune that model locally.

``Trainer`` runs on ``accelerate``'s ``Accelerator``, so the same script runs on the CPU, one GPU or
several (``accelerate launch``, DDP), in mixed precision with ``--bf16``; nothing here is device code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel, Trainer, TrainingArguments

from fedgrow_hf.metrics import compute_classification_metrics


def add_training_arguments(parser: argparse.ArgumentParser, target: str) -> None:
    parser.add_argument(
        "--target", default=target, help="target shape as LAYERS,HIDDEN,HEADS,FFN (default: %(default)s)"
    )
    parser.add_argument("--ligo-steps", type=int, default=100, help="operator training steps (stage 1)")
    parser.add_argument(
        "--finetune-steps", type=int, default=200, help="fine-tuning steps of the merged model"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="per-device batch size")
    parser.add_argument("--ligo-lr", type=float, default=1e-3, help="learning rate of the operator")
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate of the fine-tuning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (Trainer/accelerate)")
    parser.add_argument("--output-dir", default="runs/grow", help="adapter, merged model, metrics and card")
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


def training_arguments(args: argparse.Namespace, stage: str, steps: int, lr: float) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(Path(args.output_dir) / stage),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=lr,
        seed=args.seed,
        bf16=args.bf16,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        ddp_find_unused_parameters=False,
    )


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters (names and float32 bytes): equal digests, equal models."""
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def grow_and_finetune(
    model: PeftModel, train_dataset, eval_dataset, processor, args: argparse.Namespace
) -> tuple[PreTrainedModel, dict[str, float]]:
    """Stage 1 (operator) and stage 2 (merged model), then save everything from the main process.

    Returns the fine-tuned model and its evaluation metrics (``eval_*``).
    """
    output = Path(args.output_dir)

    def trainer(model: torch.nn.Module, stage: str, steps: int, lr: float) -> Trainer:
        return Trainer(
            model=model,
            args=training_arguments(args, stage, steps, lr),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            compute_metrics=compute_classification_metrics,
        )

    ligo = trainer(model, "ligo", args.ligo_steps, args.ligo_lr)
    ligo.train()
    grown_metrics = ligo.evaluate(metric_key_prefix="grown")
    ligo.save_model(str(output / "adapter"))  # PeftModel.save_pretrained, main process only

    merged = model.merge_and_unload()
    finetune = trainer(merged, "finetune", args.finetune_steps, args.lr)
    finetune.train()
    metrics = finetune.evaluate()
    if finetune.is_world_process_zero():
        finetune.save_model(str(output / "model"))
        processor.save_pretrained(output / "model")
        # the final model's results (what its card reports), and the grown model's before fine-tuning
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (output / "grown_metrics.json").write_text(json.dumps(grown_metrics, indent=2) + "\n")
    if args.hash_file:
        state = finetune.accelerator.state
        record = {
            "rank": state.process_index,
            "world_size": state.num_processes,
            "sha256": weights_digest(merged),
        }
        Path(f"{args.hash_file}.rank{state.process_index}").write_text(json.dumps(record) + "\n")
    return merged, metrics
