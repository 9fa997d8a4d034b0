"""`fedgrow_hf.grow_and_train`: the LiGO recipe as one Python call, on a tiny BERT and real SST-2 rows."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

from fedgrow_hf import grow_and_train
from fedgrow_hf.data import align_class_labels, load_text_classification, tokenize_text
from fedgrow_hf.recipe import EVAL_RESULTS_FILE, DatasetInfo, TrainingSchedule, class_names

MAX_LENGTH = 16


def test_grow_and_train_returns_the_fine_tuned_model_and_its_scores(tmp_path, tiny_source, shared_data_dir):
    sst2 = str(shared_data_dir / "sst2")
    splits = align_class_labels({
        "train": load_text_classification(sst2, "train", limit=40),
        "test": load_text_classification(sst2, "test", limit=32),
    })  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(tiny_source)
    train, test = (tokenize_text(splits[name], tokenizer, MAX_LENGTH) for name in ("train", "test"))
    target = AutoConfig.from_pretrained(tiny_source)
    target.update({"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128})

    result = grow_and_train(
        str(tiny_source),
        target,
        train,
        test,
        output_dir=tmp_path / "grown",
        schedule=TrainingSchedule(operator_steps=2, finetune_steps=2, batch_size=8),
        processor=tokenizer,
        data_info=DatasetInfo(dataset_name="SST-2", train_split="train", eval_split="test"),
    )

    model = result.model
    assert isinstance(model, PreTrainedModel) and type(model).__name__ == "BertForSequenceClassification"
    assert all(parameter.requires_grad for parameter in model.parameters())  # the whole model was trained
    assert model.config.id2label == {0: "0", 1: "1"} and target.id2label != model.config.id2label
    assert json.loads((tmp_path / "grown" / EVAL_RESULTS_FILE).read_text()) == result.metrics
    assert set(result.operator_metrics) == set(result.metrics) == {"accuracy", "precision_macro", "f1_macro"}
    model.eval()
    with torch.no_grad():
        rows = test[:]
        logits = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"]).logits
    accuracy = float(np.mean(logits.argmax(-1).cpu().numpy() == rows["labels"].numpy()))
    assert result.metrics["accuracy"] == pytest.approx(accuracy)
    card = (tmp_path / "grown" / "README.md").read_text()
    assert "Dataset: SST-2 (split `test`), 32 examples" in card and "40 examples of SST-2 (split `train`)" in card


def labelled(labels: list[str], names: list[str] | None = None) -> datasets.Dataset:
    feature = datasets.ClassLabel(names=names or sorted(set(labels)))
    return datasets.Dataset.from_dict(
        {"labels": [feature.str2int(label) for label in labels]}, features=datasets.Features({"labels": feature})
    )


@pytest.mark.parametrize(
    ("train", "evaluation", "message"),
    [
        (labelled(["a", "b"]), labelled(["b"]), r"encoded differently \(\['a', 'b'\] vs \['b'\]\)"),
        (labelled(["a", "a"], ["a", "b"]), labelled(["b"], ["a", "b"]), "single class \\('a'\\)"),
        (labelled(["a", "b"]).select([]), labelled(["a"], ["a", "b"]), "train_dataset holds no examples"),
        (datasets.Dataset.from_dict({"labels": [0, 1]}), labelled(["a"]), "that is a datasets.ClassLabel"),
    ],
)
def test_data_that_cannot_train_a_classifier_is_refused(train, evaluation, message):
    with pytest.raises(ValueError, match=message):
        class_names(train, evaluation)


def test_schedule_refuses_negative_steps_and_rates():
    with pytest.raises(ValueError, match="finetune_steps must be >= 0"):
        TrainingSchedule(finetune_steps=-1)
    with pytest.raises(ValueError, match="finetune_learning_rate must be > 0"):
        TrainingSchedule(finetune_learning_rate=0.0)
