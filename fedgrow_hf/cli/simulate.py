"""``fedgrow simulate CONFIG``: a whole Fed-Grow federation on this machine (Flower simulation engine).

CONFIG is a TOML or JSON federation config (schema: docs/config.md; examples in ``examples/configs/``).
Writes ``RUN_DIR/metrics.jsonl`` (one line per round: loss, accuracy, bytes up/down per party),
``RUN_DIR/global_operator.safetensors`` (the final Global-LiGO) and a checkpoint after every round, from
which ``--resume`` continues; the console shows one progress display, and what the parties and libraries print
goes to ``RUN_DIR/fedgrow.log`` (``--verbose``: to the console).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..experiment.config import PHASE2_MODES
from ..process import exempt_imports_from_collection
from .console import add_verbose_argument, run_console
from .engine import add_engine_arguments, engine_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="federation config (.toml or .json)")
    parser.add_argument("--run-dir", help="output folder (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    parser.add_argument("--rounds", type=int, help="override [federation].rounds")
    parser.add_argument("--phase2", choices=PHASE2_MODES,
                        help="override [federation].phase2: 'local' (LiGO's regime: a short operator phase, then "
                             "each party fine-tunes its merged model), 'merge' (the Fed-Grow paper's operator-only "
                             "regime: no fine-tuning, every party merges its final operator once), 'federated', 'none'")
    add_engine_arguments(parser, "Flower's simulation engine (Ray, default) or every party in this process, one after "
                                 "another, on its device (a GPU if there is one); no secure aggregation")
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..experiment.config import FederationConfig
    from ..experiment.data import check_data
    from ..federated.simulate import simulate

    config = FederationConfig.load(args.config)
    if args.rounds is not None or args.phase2 is not None:
        config.federation.rounds = config.federation.rounds if args.rounds is None else args.rounds
        config.federation.phase2 = args.phase2 or config.federation.phase2
        config.validate()
    run_dir = args.run_dir or f"runs/{config.name}"
    fed = config.federation
    # bad data stops the run in check_data, before the console's log makes the run folder (simulate reuses it)
    exempt_imports_from_collection()
    with run_console(run_dir, args.verbose, check=lambda: check_data(config)) as console, Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console, redirect_stdout=args.verbose,
        redirect_stderr=args.verbose,
    ) as progress:
        task = progress.add_task(
            f"{config.num_parties} parties x {fed.local_steps} local steps", total=fed.rounds, status=f"starting ({args.engine}) ..."
        )
        sent = {"bytes": 0}

        def on_round(report: dict[str, Any]) -> None:
            parties = report["parties"].values()
            sent["bytes"] += sum(p["bytes_up"] + p["bytes_down"] for p in parties)
            status = f"{report['phase']} round {report['round']}: {_figures(report)} | sent {_human(sent['bytes'])}"
            if report.get("dropped"):
                status += f" | dropped {len(report['dropped'])}"
            if report["phase"] == "operator":
                progress.update(task, completed=report["round"], status=status)
            else:
                progress.update(task, status=status)
            print(status, flush=True)  # above the progress display with --verbose, else into the log

        simulate(config, run_dir, resume=args.resume, on_round=on_round, engine=engine_from_args(args))
        console.print(f"metrics: {run_dir}/metrics.jsonl  final Global-LiGO: {run_dir}/global_operator.safetensors")
    return 0


def _figures(report: dict[str, Any]) -> str:
    """A round's mean loss and accuracy; under secure aggregation with ``party_metrics = "none"`` parties
    disclose neither."""
    if report.get("loss") is None or report.get("accuracy") is None:
        return "no figures disclosed"
    return f"loss {report['loss']:.4f} acc {report['accuracy']:.3f}"


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
