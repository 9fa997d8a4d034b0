"""Decoder language models end to end: text corpora packed into blocks, next-token scores, the causal-LM recipe
(`grow_and_train_causal_lm`, `fedgrow grow --task causal-lm`) on a tiny local Llama with a real tokenizer."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from fedgrow_hf.cli import main
from fedgrow_hf.data import corpus_split_names, load_text_corpus, pack_causal_lm
from fedgrow_hf.experiment.recipe_data import causal_lm_datasets
from fedgrow_hf.experiment.targets import resolve_target
from fedgrow_hf.export import load_grown
from fedgrow_hf.metrics import compute_causal_lm_metrics, perplexity
from fedgrow_hf.recipe import ADAPTER_DIR, EVAL_RESULTS_FILE, TrainingSchedule, grow_and_train_causal_lm

TARGET = {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 3,
          "intermediate_size": 96}
BLOCK = 16


@pytest.fixture
def agnews_sample(tmp_path, shared_data_dir):
    """AG News's layout (train/test TSVs of `sentence` and a string `label`) with a few real articles a split."""
    folder = tmp_path / "agnews-sample"
    folder.mkdir()
    for split, rows in (("train", 40), ("test", 12)):
        lines = (shared_data_dir / "agnews" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        (folder / f"{split}.tsv").write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    return folder


# --- corpora ------------------------------------------------------------------------------------


def test_text_files_folders_and_tables_are_corpora_of_documents(tmp_path, agnews_sample):
    (tmp_path / "books" / "b").mkdir(parents=True)
    (tmp_path / "books" / "a.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    (tmp_path / "books" / "b" / "c.md").write_text("third line\n", encoding="utf-8")
    assert load_text_corpus(str(tmp_path / "books" / "a.txt"))["text"] == ["first line", "second line"]
    # a folder that is no folder of splits is one corpus of every text file under it, in path order
    assert corpus_split_names(str(tmp_path / "books")) == []
    assert load_text_corpus(str(tmp_path / "books"))["text"] == ["first line", "second line", "third line"]
    # a folder of splits: its <split> file's text column
    assert corpus_split_names(str(agnews_sample)) == ["test", "train"]
    test = load_text_corpus(str(agnews_sample), "test", text_column="sentence")
    assert test.column_names == ["text"] and len(test) == 12 and test["text"][0].startswith("Unions representing workers")
    with pytest.raises(KeyError, match="no text column 'text'; available columns: sentence, label"):
        load_text_corpus(str(agnews_sample), "test")


def test_packing_joins_documents_by_the_separator_and_cuts_whole_blocks(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    texts = ["the movie was good", "a slow , dull film", "fine"]
    blocks = pack_causal_lm(datasets.Dataset.from_dict({"text": texts}), tokenizer, block_size=4)
    stream = [token for text in texts for token in [*tokenizer(text, add_special_tokens=False)["input_ids"],
                                                    tokenizer.sep_token_id]]
    rows = blocks[:]
    assert rows["input_ids"].tolist() == [stream[i:i + 4] for i in range(0, len(stream) - 3, 4)]
    assert torch.equal(rows["labels"], rows["input_ids"]) and bool(rows["attention_mask"].all())
    with pytest.raises(ValueError, match="fewer than block_size=64 tokens"):
        pack_causal_lm(datasets.Dataset.from_dict({"text": texts}), tokenizer, block_size=64)


def test_a_corpus_without_an_evaluation_split_holds_documents_out(tmp_path, minilm_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"document number {i} is about topic {i % 7}" for i in range(50)), encoding="utf-8")
    train, evaluation, info, _ = causal_lm_datasets(str(corpus), str(minilm_path), block_size=8, eval_fraction=0.2)
    assert info.eval_split == "20% of the training documents, held out" and info.train_split is None
    assert len(train) > 3 * len(evaluation) > 0
    trained, held_out = ({tuple(row) for row in rows[:]["input_ids"].tolist()} for rows in (train, evaluation))
    assert not trained & held_out


# --- scores -------------------------------------------------------------------------------------


def test_next_token_scores_compare_each_prediction_with_the_following_label():
    predictions = np.array([[5, 6, 7, 9], [1, 2, 3, 4]])  # position t predicts the token at t + 1
    labels = np.array([[0, 5, 6, 8], [0, 1, -100, -100]])
    scores = compute_causal_lm_metrics((predictions, labels))
    assert scores["accuracy"] == pytest.approx(3 / 4)  # 5, 6 and 1 right; 7 != 8; the -100 are not scored
    # over the tokens predicted or expected (1, 5, 6, 7, 8), as scikit-learn: 1, 5 and 6 always right, 7 never,
    # 8 never predicted (0)
    assert scores["precision_macro"] == pytest.approx(3 / 5)
    assert perplexity(math.log(20.0)) == pytest.approx(20.0) and perplexity(1e4) == math.inf


# --- the recipe ---------------------------------------------------------------------------------


def test_causal_lm_recipe_trains_both_phases_reports_perplexity_and_generates(tmp_path, tiny_llama_source, agnews_sample):
    train, evaluation, info, tokenizer = causal_lm_datasets(
        str(agnews_sample), str(tiny_llama_source), text_column="sentence", block_size=BLOCK)
    target = resolve_target(json.dumps(TARGET), LlamaConfig.from_pretrained(tiny_llama_source))
    output = tmp_path / "grown"
    result = grow_and_train_causal_lm(
        str(tiny_llama_source), target, train, evaluation, output_dir=output, tokenizer=tokenizer, data_info=info,
        schedule=TrainingSchedule(operator_steps=2, finetune_steps=2, batch_size=4, finetune_learning_rate=1e-3))

    for figures in (result.operator_metrics, result.metrics):
        assert set(figures) == {"cross_entropy", "perplexity", "next_token_accuracy"}
        assert figures["perplexity"] == pytest.approx(math.exp(figures["cross_entropy"]))
    assert result.metrics != result.operator_metrics  # the full-model phase changed the model
    assert json.loads((output / EVAL_RESULTS_FILE).read_text()) == result.metrics
    # the saved directory is a plain decoder with its tokenizer: it loads, scores as reported and generates
    model = AutoModelForCausalLM.from_pretrained(output).eval()
    assert type(model) is LlamaForCausalLM and model.config.num_hidden_layers == 3
    rows = evaluation[:]
    with torch.no_grad():
        loss = model(input_ids=rows["input_ids"], labels=rows["labels"]).loss
    assert float(loss) == pytest.approx(result.metrics["cross_entropy"], rel=1e-4)
    prompt = AutoTokenizer.from_pretrained(output)("stocks fell", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert generated.shape == (1, prompt["input_ids"].shape[1] + 5)
    # the cards: the text-generation pipeline, the figures of each phase, counted in blocks
    card = (output / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "AutoModelForCausalLM.from_pretrained" in card
    assert f"{len(train)} blocks of {BLOCK} tokens of agnews-sample (split `train`)" in card
    operator_row = next(line for line in card.splitlines() if line.startswith("| 1 | the LiGO operator |"))
    assert f"perplexity {result.operator_metrics['perplexity']:.4g}" in operator_row
    adapter = load_grown(output / ADAPTER_DIR, sources=[tiny_llama_source])
    assert type(adapter.base_model.model) is LlamaForCausalLM
    assert adapter.generate(**prompt, max_new_tokens=2, min_new_tokens=2, do_sample=False).shape[1] == prompt["input_ids"].shape[1] + 2


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path, tiny_llama_source, agnews_sample):
    train, evaluation, _, tokenizer = causal_lm_datasets(str(agnews_sample), str(tiny_llama_source),
                                                         text_column="sentence", block_size=BLOCK)
    target = resolve_target(json.dumps({**TARGET, "vocab_size": 1000}), LlamaConfig.from_pretrained(tiny_llama_source))
    with pytest.raises(ValueError, match="30,522 tokens, more than the target's vocab_size 1,000"):
        grow_and_train_causal_lm(str(tiny_llama_source), target, train, evaluation, output_dir=tmp_path / "out",
                                 tokenizer=tokenizer)


def test_smollm2_presets_give_the_next_size_of_a_smollm2_source():
    """SmolLM2-135M's config (as HuggingFaceTB/SmolLM2-135M ships it; no weights needed) grown to the default
    causal-LM target: SmolLM2-360M's shape, with its 64-wide heads."""
    smollm2_135m = LlamaConfig(num_hidden_layers=30, hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                               intermediate_size=1536, head_dim=64, vocab_size=49152, tie_word_embeddings=True)
    target = resolve_target("smollm2-360m", smollm2_135m)
    assert (target.num_hidden_layers, target.hidden_size, target.num_attention_heads, target.num_key_value_heads,
            target.intermediate_size, target.head_dim) == (32, 960, 15, 5, 2560, 64)
    assert target.vocab_size == 49152 and target.tie_word_embeddings


# --- fedgrow grow --task causal-lm --------------------------------------------------------------


def test_fedgrow_grow_causal_lm_reports_loss_and_perplexity_after_each_phase(tmp_path, tiny_llama_source,
                                                                             agnews_sample, capsys):
    code = main(["grow", "--task", "causal-lm", "--source", str(tiny_llama_source), "--data", str(agnews_sample),
                 "--text-column", "sentence", "--target", json.dumps(TARGET), "--max-steps", "2",
                 "--finetune-steps", "1", "--batch-size", "4", "--max-length", str(BLOCK),
                 "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    figures = json.loads((tmp_path / "out" / EVAL_RESULTS_FILE).read_text())
    assert f"fine-tuned grown model: validation loss {figures['cross_entropy']:.4f}, perplexity " in out
    assert "after the operator phase: validation loss" in out and f"blocks of {BLOCK} tokens (test)" in out
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "out")) is LlamaForCausalLM


@pytest.mark.parametrize(
    ("task", "source", "message"),
    [
        ("causal-lm", None, "--task causal-lm needs --source"),
        ("causal-lm", "tiny_source", "model_type 'bert' is no decoder language model"),
        ("classification", "tiny_llama_source", "grow it as a causal language model (fedgrow grow --task causal-lm)"),
    ],
)
def test_a_source_of_the_wrong_kind_is_one_line(request, tmp_path, capsys, task, source, message):
    options = ["--source", str(request.getfixturevalue(source))] if source else []
    assert main(["grow", "--task", task, *options, "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
