"""The options ``fedgrow simulate`` and ``fedgrow reproduce`` share to choose how parties run on this machine."""

from __future__ import annotations

import argparse

from ..federated.engine import ENGINES, SimulationEngine


def add_engine_arguments(parser: argparse.ArgumentParser, engine_help: str) -> None:
    parser.add_argument("--engine", choices=ENGINES, default="ray", help=engine_help)
    parser.add_argument("--cpus-per-party", type=float, default=1.0, help="CPU cores Ray gives each party")
    parser.add_argument("--gpus-per-party", type=float, default=0.0,
                        help="GPUs Ray gives each party (0.5: two parties share one); default 0: parties train on "
                             "the CPU under Ray even on a GPU machine")


def engine_from_args(args: argparse.Namespace) -> SimulationEngine:
    return SimulationEngine(args.engine, args.cpus_per_party, args.gpus_per_party)
