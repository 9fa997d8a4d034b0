"""Model cards: they parse, their metadata round-trips, and their numbers are the run's."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from fedgrow_hf.cli import main
from fedgrow_hf.export import load_grown, merge_adapter
from fedgrow_hf.hub import FederationFacts, TrainingFacts, TrainingPhase, build_model_card


@pytest.fixture(scope="module")
def sst2_metrics(bert_adapter_dir, bert_source_dir, shared_data_dir) -> dict[str, float]:
    """Metrics of the merged tiny model on 32 real SST-2 dev sentences (what a run would report)."""
    from transformers import AutoTokenizer

    from fedgrow_hf.data import load_text_classification, tokenize_text
    from fedgrow_hf.metrics import compute_classification_metrics

    dev = load_text_classification(str(shared_data_dir / "sst2"), "dev", limit=32)
    batch = tokenize_text(dev, AutoTokenizer.from_pretrained(bert_source_dir), max_length=32)[:]
    with torch.no_grad():
        logits = merge_adapter(bert_adapter_dir)(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    return compute_classification_metrics((logits.numpy(), batch["labels"].numpy()))


def test_card_parses_and_metadata_round_trips(bert_adapter_dir, sst2_metrics, tmp_path):
    card = build_model_card(
        bert_adapter_dir,
        repo_id="someone/grown-bert",
        merged=True,
        metrics=sst2_metrics,
        dataset_id="stanfordnlp/sst2",
        dataset_name="SST-2",
        dataset_split="validation",
        federation=FederationFacts(parties=3, rounds=7, bytes_exchanged=123_456),
        base_model=["sentence-transformers/all-MiniLM-L6-v2"],
        license="apache-2.0",
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    assert data["base_model"] == ["sentence-transformers/all-MiniLM-L6-v2"]
    assert set(data["tags"]) >= {"fedgrow", "ligo", "federated-learning"}
    assert data["datasets"] == ["stanfordnlp/sst2"] and data["pipeline_tag"] == "text-classification"
    # model-index round trip: the library parses back exactly the run's metrics
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "grown-bert"
    assert {r.metric_type: r.metric_value for r in results} == sst2_metrics
    assert all(r.dataset_type == "stanfordnlp/sst2" and r.dataset_split == "validation" for r in results)
    assert ModelCardData(**data).to_dict() == data
    text = loaded.text
    for value in sst2_metrics.values():
        assert f"| {value} |" in text
    assert "| 3 | 7 | 123,456 |" in text
    # the operator size stated is the adapter's own
    operator = load_grown(bert_adapter_dir).base_model.operator
    assert f"{sum(p.numel() for p in operator.parameters()):,} operator parameters" in text
    assert "| this model | target | 3 | 64 | 8 | 128 |" in text
    assert "| source | 2 | 32 | 4 | 64 |" in text


def test_adapter_card_without_results_says_so(bert_adapter_dir):
    card = build_model_card(bert_adapter_dir, repo_id="someone/ligo-adapter", merged=False)
    assert card.data.library_name == "peft" and "peft" in card.data.tags
    assert card.data.eval_results is None and card.data.base_model is None  # the source is a local dir
    assert "No evaluation results were recorded" in card.text
    assert "## Federation" not in card.text
    assert 'load_grown("someone/ligo-adapter")' in card.text


def test_metrics_without_dataset_are_refused(bert_adapter_dir):
    with pytest.raises(ValueError, match="dataset"):
        build_model_card(bert_adapter_dir, repo_id="a/b", merged=True, metrics={"accuracy": 0.5})


def test_cli_card_for_merged_dir_reads_jsonl_results(bert_adapter_dir, tmp_path, capsys):
    merged_dir = tmp_path / "merged"
    merge_adapter(bert_adapter_dir).save_pretrained(merged_dir)
    results = tmp_path / "metrics.jsonl"
    records = [
        {
            "round": 1,
            "eval_accuracy": 0.5,
            "eval_loss": 0.7,
            "parties": 4,
            "rounds": 2,
            "bytes_exchanged": 999,
        },
        {
            "round": 2,
            "eval_accuracy": 0.625,
            "eval_f1_macro": 0.6,
            "eval_loss": 0.6,
            "parties": 4,
            "rounds": 2,
            "bytes_exchanged": 2048,
        },
    ]
    results.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    argv = [
        "card",
        str(merged_dir),
        "--adapter",
        str(bert_adapter_dir),
        "--results",
        str(results),
        "--dataset",
        "stanfordnlp/sst2",
        "--repo-id",
        "me/grown",
    ]
    assert main(argv) == 0
    card = ModelCard.load(merged_dir / "README.md")
    _, results_back = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {r.metric_type: r.metric_value for r in results_back} == {"accuracy": 0.625, "f1_macro": 0.6}
    assert "| 4 | 2 | 2,048 |" in card.text
    assert card.data.library_name == "transformers"
    assert "Only Global-LiGO state left a party" in card.text


def test_a_card_names_what_else_left_the_parties(bert_adapter_dir, tmp_path):
    """A federation that averaged more than the Global-LiGO (the Fed-Grow authors' variants) gets a card that
    lists it instead of claiming that only the Global-LiGO was shared; from the API, a results record and the
    CLI alike."""
    shared = ("its task head, every round", "its grown intermediate model, once")
    card = build_model_card(bert_adapter_dir, repo_id="a/b", merged=False,
                            federation=FederationFacts(parties=3, rounds=7, shared=shared))
    assert "Only Global-LiGO" not in card.text and "sharing more than the Global-LiGO" in card.text
    assert all(f"- {item}\n" in card.text for item in shared)
    assert FederationFacts.from_record({"parties": 3, "rounds": 7, "shared": list(shared)}).shared == shared
    assert FederationFacts.from_record({"parties": 3, "rounds": 7}).shared == ()
    with pytest.raises(ValueError, match="'shared' must be a list"):
        FederationFacts.from_record({"parties": 3, "rounds": 7, "shared": "the head"})
    argv = ["card", str(bert_adapter_dir), "--output", str(tmp_path / "card.md"), "--parties", "3", "--rounds", "7",
            *(arg for item in shared for arg in ("--shared", item))]
    assert main(argv) == 0
    assert all(f"- {item}\n" in (tmp_path / "card.md").read_text() for item in shared)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("merged_without_adapter", "give --adapter"),
        ("bad_results", "cannot parse results file"),
        ("missing_dir", "is not a directory"),
    ],
)
def test_cli_card_errors_are_one_line(bert_adapter_dir, tmp_path, capsys, setup, message):
    target = tmp_path / "model"
    argv = ["card", str(target)]
    if setup == "missing_dir":
        argv = ["card", str(tmp_path / "nowhere")]
    else:
        target.mkdir()
        (target / "config.json").write_text("{}")
    if setup == "bad_results":
        (tmp_path / "r.json").write_text("{not json")
        argv += ["--adapter", str(bert_adapter_dir), "--results", str(tmp_path / "r.json")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedgrow card: error:") and message in err and "\n" not in err


def test_dual_ligo_card_states_the_intermediate_and_global_stage(bert_source_dir, tmp_path):
    from transformers import AutoConfig, BertForSequenceClassification

    import fedgrow_hf

    target = AutoConfig.from_pretrained(bert_source_dir)
    target.update(
        {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128}
    )
    intermediate = {
        "num_hidden_layers": 2,
        "hidden_size": 48,
        "num_attention_heads": 6,
        "intermediate_size": 96,
    }
    model = fedgrow_hf.grow(
        str(bert_source_dir), target, model_class=BertForSequenceClassification, task_type="SEQ_CLS",
        intermediate_config=intermediate, modules_to_save=["classifier"],
    )  # fmt: skip
    model.save_pretrained(tmp_path / "adapter")
    text = build_model_card(tmp_path / "adapter", repo_id="me/dual", merged=False).text
    global_size = sum(t.numel() for t in model.global_state_dict().values())
    total = global_size + sum(t.numel() for t in model.local_state_dict().values())
    assert "Dual-LiGO (Local + Global stages)" in text
    assert "| intermediate (Dual-LiGO) | common shape | 2 | 48 | 6 | 96 |" in text
    assert f"{total:,} operator parameters ({global_size:,} in the shared Global-LiGO stage)" in text


def test_card_states_the_training_recipe_and_local_data_without_model_index(bert_adapter_dir):
    training = TrainingFacts(
        phases=(TrainingPhase("the operator", 20, 1e-3), TrainingPhase("the whole model", 200, 5e-5)),
        batch_size=16,
        seed=3,
        train_examples=1_600,
        eval_examples=400,
        train_split="train",
    )
    card = build_model_card(
        bert_adapter_dir,
        repo_id="grown",
        merged=True,
        metrics={"accuracy": 0.75},
        dataset_name="my/local/data.tsv",
        dataset_split="20% of train, held out",
        training=training,
    )
    text = card.text
    assert "on 1,600 examples of my/local/data.tsv (split `train`)\n(batch size 16, seed 3)" in text
    assert "| 1 | the operator | 20 | 0.001 |\n| 2 | the whole model | 200 | 5e-05 |" in text
    assert "Dataset: my/local/data.tsv (split `20% of train, held out`), 400 examples, none of them trained on." in text
    assert "| accuracy | 0.75 |" in text
    # a model-index entry must name a Hub dataset: local data gives none
    assert card.data.eval_results is None and card.data.datasets is None


def test_cli_card_reads_the_shape_of_a_local_source_given_with_source(bert_source_dir, tmp_path, capsys):
    """An adapter names a local source by its directory's name only; --source says where it is."""
    from transformers import AutoConfig, BertForSequenceClassification

    import fedgrow_hf
    from fedgrow_hf.cli import main

    target = AutoConfig.from_pretrained(bert_source_dir)
    target.update({"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128})
    fedgrow_hf.grow(str(bert_source_dir), target, model_class=BertForSequenceClassification, task_type="SEQ_CLS",
                    modules_to_save=["classifier"]).save_pretrained(tmp_path / "adapter")
    row = f"| `{bert_source_dir.name}` | source | 2 | 32 | 4 | 64 |"
    assert main(["card", str(tmp_path / "adapter"), "--output", str(tmp_path / "unknown.md")]) == 0
    assert row not in (tmp_path / "unknown.md").read_text()
    assert main(["card", str(tmp_path / "adapter"), "--source", str(bert_source_dir),
                 "--output", str(tmp_path / "README.md")]) == 0
    assert row in (tmp_path / "README.md").read_text()
    assert "model card written to" in capsys.readouterr().out
