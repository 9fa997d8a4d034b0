"""``fedgrow``: the command-line interface.

Every subcommand is a module of this package named after it, defining ``add_arguments(parser)``
and ``run(args) -> int``; its one-line help is in :data:`SUBCOMMANDS`. Modules are imported only
when their subcommand runs, so ``fedgrow --help`` works without the optional extras (Flower,
matplotlib) installed. Errors reach the user as one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> one-line help (kept here so that --help needs no heavy import)
SUBCOMMANDS: dict[str, str] = {
    "grow": "grow source model(s) into a target with LiGO; with data, train the operator, then the whole model, and evaluate",
    "merge": "turn a LiGO adapter into a plain transformers model directory (low memory)",
    "simulate": "run a Fed-Grow federation on this machine with Flower's simulation engine",
    "reproduce": "reproduce Fed-Grow's comparison against baselines on a preset",
    "card": "render a model card for a grown model or adapter",
    "push": "push a merged model or a LiGO adapter, with its card, to the Hugging Face Hub",
}


class CLIError(Exception):
    """An error whose message is all the user needs (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedgrow", description="Grow transformers with (Dual-)LiGO operators, alone or federated (Fed-Grow)."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(f"{__name__}.{args.command}")
    sub = argparse.ArgumentParser(prog=f"fedgrow {args.command}", description=SUBCOMMANDS[args.command])
    sub.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    module.add_arguments(sub)
    sub_args = sub.parse_args(rest)
    sub_args.debug = sub_args.debug or args.debug
    try:
        return int(module.run(sub_args) or 0)
    except KeyboardInterrupt:
        print("fedgrow: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line for users; --debug for developers
        if sub_args.debug:
            raise
        print(f"fedgrow {args.command}: error: {error}", file=sys.stderr)
        return 1
