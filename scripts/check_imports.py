"""Check the import graph of ``fedgrow_hf``: the layering rules a newcomer relies on, as a command.

``python scripts/check_imports.py`` reads every module with :mod:`ast` (nothing is imported, so it needs none
of the package's dependencies) and reports

* import cycles between ``fedgrow_hf`` modules (an error): every import counts, including those inside
  functions, since a lazy import only postpones a cycle to run time;
* modules outside ``fedgrow_hf/cli/`` that import ``fedgrow_hf.cli`` (an error): the CLI parses arguments and
  calls the library, so the library must never climb back up to it;
* what ``fedgrow_hf/reproduce/`` imports from ``fedgrow_hf/federated/`` (listed; an error beyond
  :data:`RUN_ENTRY_POINTS`): the comparison may use only what runs a federation; anything else (configs, a
  party's model and data) belongs in ``fedgrow_hf/experiment/``, the layer both share;
* modules of ``fedgrow_hf/experiment/`` importing a layer above it (:data:`ABOVE_EXPERIMENT`, an error): the
  description of an experiment is what the recipe, the federation, the comparison and the CLI build on.

Exit status: 0 when no rule is broken, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "fedgrow_hf"
CLI = f"{PACKAGE}.cli"
REPRODUCE = f"{PACKAGE}.reproduce"
FEDERATED = f"{PACKAGE}.federated"
EXPERIMENT = f"{PACKAGE}.experiment"
# What runs a federation, by module: the names reproduce/ may import from federated/ (METRICS_FILE: the name
# of the record a run writes; run_records: reading it; resumable_round: whether a killed run can go on).
RUN_ENTRY_POINTS = {
    f"{FEDERATED}.simulate": {"simulate", "METRICS_FILE", "run_records", "resumable_round"},
    f"{FEDERATED}.engine": {"SimulationEngine", "as_engine"},
}
ABOVE_EXPERIMENT = (FEDERATED, f"{PACKAGE}.reproduce", f"{PACKAGE}.recipe", CLI)


@dataclass(frozen=True)
class Import:
    """One ``fedgrow_hf`` module importing another (``names``: what a ``from`` import takes from it)."""

    importer: str
    path: Path
    line: int
    target: str
    names: tuple[str, ...] = ()


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _owner(name: str, modules: dict[str, Path]) -> str:
    """The module that defines ``name``: itself, or the longest known prefix (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _absolute(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name a relative ``from ... import`` refers to."""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The ``fedgrow_hf`` imports of one module, anywhere in it (module level or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _within(alias.name, PACKAGE):
                    yield Import(name, path, node.lineno, _owner(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            source = (_absolute(name, path.name == "__init__.py", node.level, node.module) if node.level
                      else node.module or "")
            if not _within(source, PACKAGE):
                continue
            # ``from pkg import submodule`` imports the submodule; other names come from ``source`` itself.
            taken = tuple(alias.name for alias in node.names if f"{source}.{alias.name}" not in modules)
            if taken:
                yield Import(name, path, node.lineno, _owner(source, modules), taken)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    yield Import(name, path, node.lineno, f"{source}.{alias.name}")


def package_imports(root: Path) -> list[Import]:
    """Every import between the package's modules."""
    modules = module_files(root)
    return [found for name, path in modules.items() for found in imports_of(name, path, modules)]


def cycles(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: every import cycle."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        graph.setdefault(found.importer, set())
        graph.setdefault(found.target, set())
        if found.target != found.importer:
            graph[found.importer].add(found.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def cli_climbers(imports: list[Import]) -> list[Import]:
    """Imports of ``fedgrow_hf.cli`` from modules outside it."""
    return [found for found in imports if _within(found.target, CLI) and not _within(found.importer, CLI)]


def reproduce_federated(imports: list[Import]) -> list[Import]:
    """What ``fedgrow_hf.reproduce`` imports from ``fedgrow_hf.federated``."""
    return [found for found in imports if _within(found.importer, REPRODUCE) and _within(found.target, FEDERATED)]


def experiment_climbers(imports: list[Import]) -> list[Import]:
    """Imports from ``fedgrow_hf.experiment`` of the layers built on it."""
    return [found for found in imports if _within(found.importer, EXPERIMENT)
            and any(_within(found.target, layer) for layer in ABOVE_EXPERIMENT)]


def is_run_entry_point(found: Import) -> bool:
    """Whether an import takes only what runs a federation (:data:`RUN_ENTRY_POINTS`): those names, or a whole
    module that holds nothing else."""
    return found.target in RUN_ENTRY_POINTS and set(found.names) <= RUN_ENTRY_POINTS[found.target]


def _where(found: Import, root: Path) -> str:
    return f"{found.path.relative_to(root)}:{found.line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository root holding fedgrow_hf/ (default: this script's repository)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    imports = package_imports(root)
    failed = False

    found_cycles = cycles(imports)
    print(f"import cycles: {len(found_cycles) or 'none'}")
    for component in found_cycles:
        failed = True
        members = set(component)
        print(f"  cycle between {', '.join(component)}:")
        for found in imports:
            if found.importer in members and found.target in members and found.importer != found.target:
                print(f"    {_where(found, root)}  {found.importer} -> {found.target}")

    climbers = cli_climbers(imports)
    print(f"modules outside {CLI} importing it: {len(climbers) or 'none'}")
    for found in climbers:
        failed = True
        print(f"  {_where(found, root)}  {found.importer} -> {found.target}")

    above = experiment_climbers(imports)
    print(f"modules of {EXPERIMENT} importing a layer above it: {len(above) or 'none'}")
    for found in above:
        failed = True
        print(f"  {_where(found, root)}  {found.importer} -> {found.target}")

    reaching = reproduce_federated(imports)
    violations = [found for found in reaching if not is_run_entry_point(found)]
    allowed = "; ".join(f"{module}: {', '.join(sorted(names))}" for module, names in RUN_ENTRY_POINTS.items())
    names_taken = sum(len(found.names) or 1 for found in violations)
    print(f"{REPRODUCE} -> {FEDERATED} imports: {len(reaching)}, {len(violations)} of them ({names_taken} names) "
          "beyond the run entry points "
          f"({allowed})")
    for found in reaching:
        mark = "ok  " if is_run_entry_point(found) else "NOT "
        names = ", ".join(found.names) if found.names else "(the module)"
        print(f"  {mark}{_where(found, root)}  {found.target}: {names}")
    failed = failed or bool(violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
