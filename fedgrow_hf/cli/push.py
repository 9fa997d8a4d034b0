"""``fedgrow push DIR REPO_ID``: a merged grown model or a LiGO adapter directory, with its card, to the Hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..hub.push import push_directory
from .card import add_card_arguments, card_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a merged model directory (`fedgrow merge`) or a LiGO adapter directory")
    parser.add_argument("repo_id", help="the Hub repository to push to, e.g. your-name/grown-bert")
    parser.add_argument(
        "--private", action="store_true", default=None, help="create the repository as private"
    )
    parser.add_argument("--token", default=None, help="Hub token (default: the one saved by `hf auth login`)")
    parser.add_argument("--commit-message", default=None, help="message of the upload commit")
    add_card_arguments(parser)


def run(args: argparse.Namespace) -> int:
    card = card_from_args(args, args.dir, args.repo_id)
    url = push_directory(
        Path(args.dir),
        args.repo_id,
        card,
        private=args.private,
        token=args.token,
        commit_message=args.commit_message,
    )
    print(f"pushed {args.dir} to {url}")
    return 0
