"""``fedgrow card DIR``: render the model card of a LiGO adapter or a merged grown model.

The card is written to ``DIR/README.md`` (or ``--output``). Its numbers come from the run: the
adapter's config and weights, a results file (``--results``: JSON, or JSON lines whose last record
counts; Trainer's ``eval_`` prefixes are dropped) and federation facts (from DIR's ``federation.json``, which a
federation writes beside each party's model, the results record's ``parties``/``rounds``/``bytes_exchanged``/
``shared`` or the flags of the same names, each overriding the one before).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub import ModelCard

from ..hub import FederationFacts, build_model_card, eval_metrics, read_results


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    """The card options, shared by ``fedgrow card`` and ``fedgrow push``."""
    group = parser.add_argument_group("model card")
    group.add_argument(
        "--adapter", default=None, help="the LiGO adapter a merged DIR was grown from (growth facts)"
    )
    group.add_argument(
        "--results", default=None, help="evaluation results: .json object or .jsonl (last record)"
    )
    group.add_argument(
        "--dataset",
        default=None,
        help="Hub id of the evaluation dataset (model-index), e.g. stanfordnlp/sst2",
    )
    group.add_argument("--dataset-name", default=None, help="pretty name of the evaluation dataset")
    group.add_argument("--dataset-split", default=None, help="split the results were measured on")
    group.add_argument("--parties", type=int, default=None, help="number of Fed-Grow parties")
    group.add_argument("--rounds", type=int, default=None, help="number of federated rounds")
    group.add_argument(
        "--bytes-exchanged", type=int, default=None, help="bytes sent between parties and server"
    )
    group.add_argument(
        "--shared",
        action="append",
        default=None,
        help="what else left every party besides the Global-LiGO, in words (repeat for several), e.g. "
        "'its task head, every round': the card lists it instead of saying only the Global-LiGO was shared",
    )
    group.add_argument(
        "--base-model",
        nargs="+",
        default=None,
        help="Hub ids of the sources (default: those that are Hub ids)",
    )
    group.add_argument("--license", default=None, help="license identifier for the card's metadata")
    group.add_argument(
        "--source",
        action="append",
        default=None,
        help="location of a source the adapter names, to read its shape; repeat in order for several. "
        "An adapter records local sources by name only unless grown with --record-local-paths",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", help="a LiGO adapter directory or a merged model directory (then give --adapter)"
    )
    parser.add_argument(
        "--repo-id", default=None, help="the Hub repository the card is for (default: DIR's name)"
    )
    parser.add_argument("--output", default=None, help="where to write the card (default: DIR/README.md)")
    add_card_arguments(parser)


def card_from_args(args: argparse.Namespace, directory: str | Path, repo_id: str) -> ModelCard:
    """Render the card of ``directory`` (adapter or merged) from the card options."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    merged = not (directory / "adapter_config.json").is_file()
    if merged and not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has neither adapter_config.json nor config.json")
    adapter = args.adapter or (None if merged else directory)
    if adapter is None:
        raise ValueError(f"{directory} is a merged model: give --adapter, the LiGO adapter it was grown from")
    record = read_results(args.results) if args.results else {}
    federation = FederationFacts.from_record(
        {
            **FederationFacts.saved_in(directory),
            **record,
            **{
                key: value
                for key, value in (
                    ("parties", args.parties),
                    ("rounds", args.rounds),
                    ("bytes_exchanged", args.bytes_exchanged),
                    ("shared", args.shared),
                )
                if value is not None
            },
        }
    )
    return build_model_card(
        adapter,
        repo_id=repo_id,
        merged=merged,
        metrics=eval_metrics(record),
        dataset_id=args.dataset,
        dataset_name=args.dataset_name,
        dataset_split=args.dataset_split,
        federation=federation,
        base_model=args.base_model,
        license=args.license,
        sources=args.source,
    )


def run(args: argparse.Namespace) -> int:
    card = card_from_args(args, args.dir, args.repo_id or Path(args.dir).resolve().name)
    output = Path(args.output or Path(args.dir) / "README.md")
    card.save(output)
    print(f"model card written to {output}")
    return 0
