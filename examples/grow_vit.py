"""Grow a ViT from a small pretrained ViT with LiGO, then fine-tune the grown model on MNIST.

    python examples/grow_vit.py --data ../shared/data/mnist
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/grow_vit.py --data ../shared/data/mnist

Without ``--source`` a tiny ViT source (``--source-shape``) is first pretrained on the same training
images (``fedgrow_hf.sources.pretrain_vit_source``). Outputs go to ``--output-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grow_common import add_training_arguments, grow_and_finetune, target_shape, training_arguments
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

import fedgrow_hf
from fedgrow_hf.data import load_image_classification, resize_images
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
    labels = train.features["label"].names
    image = {"image_size": args.image_size, "patch_size": args.patch_size, "num_channels": channels}
    source = args.source
    if source is None:
        source = str(Path(args.output_dir) / "source")
        # one process pretrains and saves the source, the others wait and load it
        with training_arguments(args, "ligo", args.ligo_steps, args.ligo_lr).main_process_first():
            if not (Path(source) / "config.json").is_file():
                shape = ViTConfig(**target_shape(args.source_shape), **image)
                pretrain_vit_source(shape, train, steps=args.source_steps, seed=args.seed).save_pretrained(
                    source
                )
    target = ViTConfig(**target_shape(args.target), **image, id2label=dict(enumerate(labels)))
    model = fedgrow_hf.grow(
        source,
        target,
        model_class=ViTForImageClassification,
        modules_to_save=["classifier"],
        init_seed=args.seed,
    )
    # what resize_images does: bilinear resize, pixels in [0, 1], no normalisation
    processor = ViTImageProcessor(
        size={"height": args.image_size, "width": args.image_size}, do_normalize=False
    )
    _, metrics = grow_and_finetune(model, train, test, processor, args)
    print(f"accuracy of the fine-tuned grown model: {metrics['eval_accuracy']:.4f}")


if __name__ == "__main__":
    main()
