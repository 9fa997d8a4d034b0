"""Grow a ViT from a small pretrained ViT with LiGO, then fine-tune the grown model on MNIST.

    python examples/grow_vit.py --data ../shared/data/mnist
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/grow_vit.py --data ../shared/data/mnist

Without ``--source`` a tiny ViT source (``--source-shape``) is first pretrained on the same training
images (``fedgrow_hf.sources.pretrain_vit_source``). ``fedgrow_hf.recipe.grow_and_train`` trains the
operator, then the merged model; outputs go to ``--output-dir`` (as in ``grow_bert.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState
from grow_common import add_training_arguments, grow_and_report, target_shape
from transformers import ViTConfig, ViTImageProcessor

from fedgrow_hf.data import align_class_labels, load_image_classification, resize_images
from fedgrow_hf.recipe import LABEL_COLUMN
from fedgrow_hf.sources import pretrain_vit_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", default=None, help="source ViT (path or Hub id); default: pretrain a tiny one"
    )
    parser.add_argument(
        "--source-shape", default="2,32,4,64", help="LAYERS,HIDDEN,HEADS,FFN of the pretrained source"
    )
    parser.add_argument("--source-steps", type=int, default=200, help="pretraining steps of the tiny source")
    parser.add_argument(
        "--data", default="../shared/data/mnist", help="MNIST IDX folder, 'sklearn-digits' or a Hub id"
    )
    parser.add_argument("--train-limit", type=int, default=2000, help="training images used")
    parser.add_argument("--eval-limit", type=int, default=500, help="test images used")
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this size")
    parser.add_argument("--patch-size", type=int, default=4)
    add_training_arguments(parser, target="6,128,8,512")
    args = parser.parse_args()

    train = resize_images(
        load_image_classification(args.data, "train", limit=args.train_limit, seed=args.seed), args.image_size
    )
    test = resize_images(load_image_classification(args.data, "test", limit=args.eval_limit), args.image_size)
    channels = train.features["pixel_values"].shape[0]
    image = {"image_size": args.image_size, "patch_size": args.patch_size, "num_channels": channels}
    source = args.source
    if source is None:
        source = str(Path(args.output_dir) / "source")
        # one process pretrains and saves the source, the others wait and load it
        with PartialState().main_process_first():
            if not (Path(source) / "config.json").is_file():
                shape = ViTConfig(**target_shape(args.source_shape), **image)
                pretrain_vit_source(shape, train, steps=args.source_steps, seed=args.seed).save_pretrained(
                    source
                )
    target = ViTConfig(**target_shape(args.target), **image)
    # what resize_images does: bilinear resize, pixels in [0, 1], no normalisation
    processor = ViTImageProcessor(
        size={"height": args.image_size, "width": args.image_size}, do_normalize=False
    )
    train, test = (
        split.rename_column("label", LABEL_COLUMN) for split in align_class_labels({"train": train, "test": test}).values()
    )
    grow_and_report(source, target, train, test, processor, args)


if __name__ == "__main__":
    main()
