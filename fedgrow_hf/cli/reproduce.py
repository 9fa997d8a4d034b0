"""``fedgrow reproduce PRESET``: Fed-Grow vs Fed-Scratch, Independent growth, own-source fine-tuning, central
LiGO on pooled data and a same-source reference, over several seeds.

PRESET is the name of a preset (a file of ``fedgrow_hf/reproduce/presets/``: ``tiny``, ``vision-small``,
``text-small``, ``gpu-small``, ``paper``, ``paper-agnews``, ``paper-agnews-full``) or the path of a federation config (the
schema of ``fedgrow simulate``, optionally with a ``[reproduce]`` table as the presets have).
Writes ``OUTPUT_DIR/results.json`` and PNG plots, and regenerates ``RESULTS.md`` from every preset's results.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..process import exempt_imports_from_collection
from .console import add_verbose_argument, run_console
from .engine import add_engine_arguments, engine_from_args

if TYPE_CHECKING:
    from rich.table import Table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..reproduce.methods import ALL_METHODS
    from ..reproduce.presets import PRESETS
    from ..reproduce.tuning import (
        LEARNING_RATE_GRID,
        LEARNING_RATE_LADDER,
        OPERATOR_RATE_GRID,
        OPERATOR_RATE_LADDER,
    )

    parser.add_argument("preset", help=f"{' | '.join(PRESETS)}, or a federation config file")
    parser.add_argument("--data-dir", default="../shared/data",
                        help="folder holding sst2/, agnews/ and mnist/ (default: ../shared/data)")
    parser.add_argument("--output-dir", help="where results.json and plots go (default: benchmarks/results/PRESET)")
    parser.add_argument("--work-dir", help="run folders and cached sources (default: runs/reproduce/PRESET)")
    parser.add_argument("--report", help="RESULTS.md to regenerate (default: OUTPUT_DIR/../../RESULTS.md)")
    parser.add_argument("--methods", nargs="+", choices=ALL_METHODS,
                        help="methods to run (default: the preset's; a config file: the LiGO-regime comparison)")
    parser.add_argument("--seeds", type=_seeds,
                        help="comma-separated seeds, e.g. 0,1,2 (default: the preset's seeds; a config file: its seed "
                             "and the next two); each changes initialisation and batch order, not the partition or the "
                             "sources")
    parser.add_argument("--tune", action="store_true",
                        help="first pick the learning rates on development splits of the parties' training data, "
                             "each only if --methods trains at it: the target's full-model rate (every method but "
                             "own-source) by independent growth, the sources' (own-source) by own-source fine-tuning, "
                             "each from "
                             f"{', '.join(f'{rate:g}' for rate in LEARNING_RATE_GRID)}; in the operator-only regime "
                             "(phase2 = merge) the operator's (every growth method) by independent growth from "
                             f"{', '.join(f'{rate:g}' for rate in OPERATOR_RATE_GRID)} (stepping on up to "
                             f"{OPERATOR_RATE_LADDER[-1]:g}) and the target's (Fed-Scratch) by a Fed-Scratch party "
                             "alone; stepping on along "
                             f"{', '.join(f'{rate:g}' for rate in LEARNING_RATE_LADDER)} while the best is at an edge")
    parser.add_argument("--keep-models", action="store_true",
                        help="keep every party's final model in WORK_DIR/seed-S/METHOD/parties/party-P/grown "
                             "(default: deleted once scored on the test split)")
    add_engine_arguments(parser, "the federated methods' engine: Flower's simulation engine (Ray, default) or every "
                                 "party in this process, one after another, on its device (a GPU if there is one)")
    parser.add_argument("--partitions", nargs="+", metavar="PARTITION",
                        help="run only these of a partitioned preset's comparisons (paper-agnews: dirichlet-0.5, iid), "
                             "e.g. one per process to use every core; results.json and RESULTS.md are then written "
                             "by a run of every partition with --resume")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N of the comparison's runs (method x seed) at once, each in a process of its own on "
                             "its share of the cores (needs --engine inprocess; default: 1, one after another)")
    parser.add_argument("--resume", action="store_true",
                        help="keep runs (method x seed, and --tune's choices and every party's score at each rate "
                             "they tried) already measured in WORK_DIR with the same config; run the others")
    parser.add_argument("--report-only", action="store_true",
                        help="only redraw the plots and regenerate RESULTS.md from OUTPUT_DIR/results.json")
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..reproduce import reproduce
    from ..reproduce.runner import load_comparison, rewrite_report, selected_partitions
    from ..reproduce.side_by_side import check_jobs

    name = Path(args.preset).stem if Path(args.preset).is_file() else args.preset
    output_dir = args.output_dir or f"benchmarks/results/{name}"
    if args.report_only:
        Console(stderr=True).log(f"wrote {rewrite_report(output_dir, args.report)}")
        return 0
    # a wrong name, config or partition stops before anything is written
    comparison = load_comparison(args.preset, args.data_dir)
    selected_partitions(comparison.settings.partitions, args.partitions)
    check_jobs(args.jobs, engine_from_args(args))
    work_dir = args.work_dir or f"runs/reproduce/{name}"
    exempt_imports_from_collection()
    with run_console(work_dir, args.verbose) as console, Progress(
        SpinnerColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
        redirect_stdout=args.verbose, redirect_stderr=args.verbose,
    ) as progress:
        task = progress.add_task(f"{comparison.config.name}: starting ...")

        def log(message: str) -> None:
            progress.update(task, description=message)
            print(message, flush=True)  # above the progress display with --verbose, else into the log

        results = reproduce(
            comparison,
            data_dir=args.data_dir,
            output_dir=output_dir,
            work_dir=work_dir,
            report_path=args.report,
            methods=args.methods,
            seeds=args.seeds,
            tune=args.tune,
            keep_models=args.keep_models,
            command=_command(args),
            engine=engine_from_args(args),
            resume=args.resume,
            partitions=args.partitions,
            jobs=args.jobs,
            log=log,
        )
        console.print(_accuracy_table(results, output_dir))  # with --partitions: of those that ran
    return 0


def _accuracy_table(results: dict[str, Any], output_dir: str) -> Table:
    """Every method's mean common-test accuracy over seeds, per partition: the comparison's results at a glance
    (every figure: ``results.json``, RESULTS.md)."""
    from rich.table import Table

    from ..reproduce.results import comparisons_of

    comparisons = comparisons_of(results, Path(output_dir))
    table = Table(title=f"{results['preset']}: mean common-test accuracy over seeds")
    table.add_column("method")
    for folder, _ in comparisons:
        table.add_column(folder.name if len(comparisons) > 1 else "accuracy", justify="right")
    for method, summary in comparisons[0][1]["methods"].items():
        cells = [_mean_std(comparison["methods"][method]["test_accuracy"]) for _, comparison in comparisons]
        table.add_row(summary["label"], *cells)
    return table


def _mean_std(figures: dict[str, Any]) -> str:
    return f"{figures['mean']:.4f}" + ("" if figures["std"] is None else f" ± {figures['std']:.4f}")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (recorded in results.json and RESULTS.md)."""
    words = ["fedgrow", "reproduce", args.preset, "--data-dir", args.data_dir]
    for flag, value in (("--output-dir", args.output_dir), ("--work-dir", args.work_dir), ("--report", args.report)):
        if value:
            words += [flag, value]
    if args.methods:
        words += ["--methods", *args.methods]
    if args.seeds:
        words += ["--seeds", ",".join(map(str, args.seeds))]
    if args.partitions:
        words += ["--partitions", *args.partitions]
    words += [flag for flag, given in (("--tune", args.tune), ("--keep-models", args.keep_models)) if given]
    return shlex.join(words + engine_from_args(args).cli_words())


def _seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (argparse type of ``--seeds``)."""
    try:
        seeds = [int(word) for word in text.split(",") if word.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from error
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    return seeds
