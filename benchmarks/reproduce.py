"""Fed-Grow vs baselines on real data: ``python benchmarks/reproduce.py PRESET [options]``.

The same as ``fedgrow reproduce PRESET [options]`` (run from the repository root, so results land in
``benchmarks/results/PRESET`` and the report in ``benchmarks/RESULTS.md``); see
``fedgrow_hf/reproduce`` for the methods and presets.
"""

import sys

from fedgrow_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", *sys.argv[1:]]))
