"""The growth examples run through transformers.Trainer (accelerate): with python, and as 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = ["--target", "3,64,8,128", "--ligo-steps", "2", "--finetune-steps", "2", "--batch-size", "4"]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _digest(model) -> str:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from grow_common import weights_digest
    finally:
        sys.path.remove(str(EXAMPLES))
    return weights_digest(model)


@pytest.mark.slow
def test_grow_bert_on_two_cpu_processes_agrees(bert_source_dir, shared_data_dir, tmp_path):
    """accelerate launches 2 processes (gloo DDP on the CPU); both end with the same weights, which are the saved ones."""
    from transformers import AutoModelForSequenceClassification

    # `accelerate launch --cpu` starts a single process (its simple launcher) unless an MPI hostfile is
    # given; the torch.distributed launcher with ACCELERATE_USE_CPU=1 runs Trainer as MULTI_CPU (gloo).
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(EXAMPLES / "grow_bert.py"), "--source", str(bert_source_dir), "--data", str(shared_data_dir / "sst2"),
        "--train-limit", "32", "--eval-limit", "16", "--max-length", "16", *TINY,
        "--output-dir", str(tmp_path / "run"), "--hash-file", str(tmp_path / "hash"),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        env={**_env(), "ACCELERATE_USE_CPU": "1"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((tmp_path / f"hash.rank{rank}").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["rank"] for r in records] == [0, 1]
    assert records[0]["sha256"] == records[1]["sha256"]
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert _digest(saved) == records[0]["sha256"]
    assert saved.config.id2label == {0: "0", 1: "1"}
    metrics = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 0.0 <= json.loads((tmp_path / "run" / "ligo_adapter" / "eval_results.json").read_text())["accuracy"] <= 1.0
    assert "Model Card for Model ID" not in (tmp_path / "run" / "README.md").read_text()


@pytest.mark.slow
def test_grow_vit_with_python(shared_data_dir, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from fedgrow_hf.export import merge_adapter

    command = [
        sys.executable, str(EXAMPLES / "grow_vit.py"), "--data", str(shared_data_dir / "mnist"),
        "--source-steps", "5", "--train-limit", "64", "--eval-limit", "32", *TINY,
        "--output-dir", str(tmp_path / "run"), "--hash-file", str(tmp_path / "hash"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "hash.rank0").read_text())
    assert record["world_size"] == 1
    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "run")
    assert saved.config.num_labels == 10 and _digest(saved) == record["sha256"]
    assert AutoImageProcessor.from_pretrained(tmp_path / "run").size["height"] == 16
    # the trained adapter it saved merges (low-memory path) into the model stage 2 started from
    merged = merge_adapter(tmp_path / "run" / "ligo_adapter", sources=[tmp_path / "run" / "source"])
    assert type(merged).__name__ == "ViTForImageClassification"
