"""Model cards for grown models: the Hub's metadata and an honest description, from the run's own facts.

Everything a card states comes from files the run wrote: the adapter's ``LiGOConfig`` (sources,
shapes, operator settings), its weights file (operator size), the sources' configs, and the
evaluation / federation numbers handed in. Rendering and metadata are ``huggingface_hub``'s
(``ModelCard.from_template``, ``ModelCardData``, ``EvalResult`` for the model-index).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import AutoConfig

from ..architectures import get_architecture_table
from ..export import read_ligo_config, saved_shapes, target_config_of, target_model_class
from ..tuners.ligo import LiGOConfig
from ..tuners.ligo.shapes import ModelShape

TEMPLATE = Path(__file__).parent / "model_cards" / "grown_model.md"
TAGS = ["fedgrow", "ligo", "federated-learning"]
# Trainer/evaluate prefixes are not part of a metric's name
METRIC_PREFIXES = ("eval_", "test_", "final_")
# bookkeeping, not results; also with a prefix (grown_runtime, train_loss ...)
NON_METRICS = ("epoch", "step", "round", "runtime", "samples_per_second", "steps_per_second", "loss",
               "model_preparation_time")
FEDERATION_KEYS = ("parties", "rounds", "bytes_exchanged", "party_bytes_received", "party_bytes_sent")
FEDERATION_FILE = "federation.json"  # beside a model: its FederationFacts (FederationFacts.save)


@dataclass(frozen=True)
class FederationFacts:
    """What the card says about a Fed-Grow run; every field comes from the run's log."""

    parties: int
    rounds: int
    bytes_exchanged: int | None = None  # by all parties and the server
    # what else left every party besides the Global-LiGO, in words (the run's
    # ``FederationSettings.sent_beyond_global_ligo()``); empty: nothing else did
    shared: tuple[str, ...] = ()
    # what the model's own party received and sent, from its ledger (``federated.ledger``): a party cannot read
    # the server's count in a deployment, and its card is the party's own statement
    party_bytes_received: int | None = None
    party_bytes_sent: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> FederationFacts | None:
        """Facts from a results record with ``parties`` and ``rounds`` (and the byte counts, and ``shared``:
        a list of what else left every party); else None."""
        if record.get("parties") is None or record.get("rounds") is None:
            return None
        shared = record.get("shared") or []
        if isinstance(shared, str) or not all(isinstance(item, str) for item in shared):
            raise ValueError(f"'shared' must be a list of what else left every party, in words; got {shared!r}")

        def count(key: str) -> int | None:
            value = record.get(key)
            return None if value is None else int(value)

        return cls(int(record["parties"]), int(record["rounds"]), count("bytes_exchanged"), tuple(shared),
                   count("party_bytes_received"), count("party_bytes_sent"))

    def to_record(self) -> dict[str, object]:
        """The facts as :meth:`from_record` reads them."""
        return {"parties": self.parties, "rounds": self.rounds, "bytes_exchanged": self.bytes_exchanged,
                "shared": list(self.shared), "party_bytes_received": self.party_bytes_received,
                "party_bytes_sent": self.party_bytes_sent}

    def save(self, directory: str | os.PathLike) -> None:
        """Write the facts beside a model (:data:`FEDERATION_FILE`), so that a card rendered again later (``fedgrow
        card``, ``fedgrow push``) states them without the flags: above all what else than the Global-LiGO left
        the parties."""
        (Path(directory) / FEDERATION_FILE).write_text(json.dumps(self.to_record(), indent=2) + "\n")

    @classmethod
    def saved_in(cls, directory: str | os.PathLike) -> dict[str, object]:
        """The facts :meth:`save` wrote in ``directory``, as a record; empty when there are none."""
        path = Path(directory) / FEDERATION_FILE
        return read_results(path) if path.is_file() else {}

    @property
    def bytes_exchanged_text(self) -> str:
        return _bytes_text(self.bytes_exchanged)

    @property
    def party_bytes_text(self) -> str:
        """The party's own counts, received / sent, for the card's table."""
        return f"{_bytes_text(self.party_bytes_received)} / {_bytes_text(self.party_bytes_sent)}"


def _bytes_text(count: int | None) -> str:
    return "not recorded" if count is None else f"{count:,}"


@dataclass(frozen=True)
class TrainingPhase:
    """One phase of the training recipe as the card states it: what it trained, how long, how fast, and
    (``figures``) how the model it left scored on the evaluation data."""

    trained: str
    steps: int
    learning_rate: float
    figures: Mapping[str, float] | None = None


@dataclass(frozen=True)
class TrainingFacts:
    """The training recipe of a grown model; every field comes from the run's own settings and data."""

    phases: tuple[TrainingPhase, ...]
    batch_size: int
    seed: int
    train_examples: int
    eval_examples: int
    train_split: str | None = None
    rows: str = "examples"  # what the counts count: a decoder trains on "blocks of 64 tokens"


# transformers class suffix -> (Hub pipeline tag, auto class that loads it)
TASKS: dict[str, tuple[str, str]] = {
    "ForCausalLM": ("text-generation", "AutoModelForCausalLM"),
    "LMHeadModel": ("text-generation", "AutoModelForCausalLM"),  # GPT2LMHeadModel
    "ForSequenceClassification": ("text-classification", "AutoModelForSequenceClassification"),
    "ForImageClassification": ("image-classification", "AutoModelForImageClassification"),
    "ForTokenClassification": ("token-classification", "AutoModelForTokenClassification"),
    "ForQuestionAnswering": ("question-answering", "AutoModelForQuestionAnswering"),
}


def task_of(model_class_name: str) -> tuple[str, str]:
    """The Hub pipeline tag and the auto class of a transformers (or auto) class name."""
    for suffix, task in TASKS.items():
        if model_class_name.endswith(suffix):
            return task
    return "feature-extraction", "AutoModel"


def eval_metrics(record: Mapping[str, object]) -> dict[str, float]:
    """Numeric metrics of one results record, named without Trainer prefixes (``eval_accuracy`` -> ``accuracy``)."""
    metrics = {}
    for key, value in record.items():
        name = key
        for prefix in METRIC_PREFIXES:
            name = name.removeprefix(prefix)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        bookkeeping = any(name == other or name.endswith(f"_{other}") for other in NON_METRICS)
        if is_number and not bookkeeping and name not in FEDERATION_KEYS:
            metrics[name] = float(value)
    return metrics


def read_results(path: str | os.PathLike) -> dict[str, object]:
    """A results file: a JSON object, or JSON lines (the last record is the final one)."""
    text = Path(path).read_text()
    try:
        if Path(path).suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not records:
                raise ValueError(f"{path} has no records")
            record = records[-1]
        else:
            record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"cannot parse results file {path}: {error}") from error
    if not isinstance(record, dict):
        raise ValueError(
            f"results file {path} must hold a JSON object per record, got {type(record).__name__}"
        )
    return record


def _source_facts(config: LiGOConfig, locations: Sequence[str] | None) -> list[dict[str, object]]:
    """Each source by the name the adapter records, with its shape read from its location."""
    facts = []
    for name, location in zip(config.source_paths, locations or config.source_paths):
        try:
            source = AutoConfig.from_pretrained(location, revision=config.source_revision)
            shape = ModelShape.from_config(source, get_architecture_table(source)).to_config_dict()
        except OSError:  # a Hub source not in the local cache: the card names it without its shape
            shape = {}
        facts.append({"name": name, "shape": shape})
    return facts


def _operator_facts(adapter_dir: Path, config: LiGOConfig) -> dict[str, object]:
    parameters = global_parameters = 0
    for key, shape in saved_shapes(adapter_dir / "adapter_model.safetensors").items():
        if ".ligo_operator." not in key:
            continue
        size = math.prod(shape)
        parameters += size
        global_parameters += size if ".global_stage." in key else 0
    return {
        "kind": "Dual-LiGO (Local + Global stages)" if config.is_dual else "LiGO",
        "width_structure": config.width_structure,
        "depth_init": config.depth_init,
        "grown_heads": list(config.grown_heads or []),
        "parameters": parameters,
        "global_parameters": global_parameters,
    }


def _hub_ids(names: list[str]) -> list[str]:
    """Sources that name Hub repositories (a local directory is no valid ``base_model``)."""
    return [name for name in names if not Path(name).exists() and name.count("/") == 1]


def build_model_card(
    adapter_dir: str | os.PathLike,
    *,
    repo_id: str,
    merged: bool,
    metrics: Mapping[str, float] | None = None,
    dataset_id: str | None = None,
    dataset_name: str | None = None,
    dataset_split: str | None = None,
    federation: FederationFacts | None = None,
    base_model: list[str] | None = None,
    license: str | None = None,
    training: TrainingFacts | None = None,
    sources: Sequence[str] | None = None,
) -> ModelCard:
    """Render the card of a grown model (``merged``) or of its LiGO adapter.

    ``metrics`` are tabled in the card and, when they were measured on a Hub dataset (``dataset_id``),
    go into its model-index (one ``EvalResult`` each); local data is named by ``dataset_name`` only,
    since a model-index entry must name a Hub dataset. ``base_model`` defaults to the sources that
    are Hub ids. ``training`` adds the training recipe (phases, steps, learning rates, data sizes).
    ``sources`` are where the sources are, to read their shapes: the adapter records local ones by
    name only (unless saved with ``record_source_paths``), and the card names them as the adapter does.
    """
    adapter_dir = Path(adapter_dir)
    config = read_ligo_config(adapter_dir)
    target = target_config_of(config)
    task, auto_class = task_of(target_model_class(config).__name__)
    metrics = dict(metrics or {})
    if metrics and not (dataset_id or dataset_name):
        raise ValueError(
            "evaluation results need the dataset they were measured on (dataset_id or dataset_name)"
        )
    eval_results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset_id,
            dataset_name=dataset_name or dataset_id,
            dataset_split=dataset_split,
            metric_type=name,
            metric_value=value,
        )
        for name, value in metrics.items()
        if dataset_id
    ]
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model if base_model is not None else _hub_ids(config.source_paths) or None,
        tags=TAGS + ([] if merged else ["peft"]),
        datasets=[dataset_id] if dataset_id else None,
        eval_results=eval_results or None,
        metrics=list(metrics) or None,
        library_name="transformers" if merged else "peft",
        pipeline_tag=task,
        license=license,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        merged=merged,
        auto_class=auto_class,
        target=target,
        intermediate=config.intermediate_config,
        sources=_source_facts(config, sources),
        operator=_operator_facts(adapter_dir, config),
        federation=federation,
        metrics=metrics,
        dataset_name=dataset_name or dataset_id,
        dataset_split=dataset_split,
        training=training,
    )
