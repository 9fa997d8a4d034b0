"""Where a comparison was measured: package versions, git commit, machine (``results.json``'s ``environment``)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

VERSIONED = ("fedgrow-hf", "torch", "transformers", "peft", "flwr", "datasets", "numpy")


def environment() -> dict[str, Any]:
    """Package versions, git commit and machine of the run."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=here).stdout.strip()
        # only the package's own code counts: results written beside it are not what measured them
        changed = subprocess.run(["git", "status", "--porcelain", "--", str(here.parent)], capture_output=True,
                                 text=True, check=True, cwd=here).stdout.strip()
        commit += " (with uncommitted changes to fedgrow_hf)" if changed else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return {"versions": versions, "python": platform.python_version(), "git_commit": commit,
            "machine": f"{platform.machine()} {platform.system()}, {device}"}
