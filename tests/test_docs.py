"""The documentation cannot drift: its Python examples run, and the site builds with warnings as errors.

Every ```` ```python ```` block of README.md, CONTRIBUTING.md and docs/*.md carries a marker on the line before
it (CONTRIBUTING.md, "Documentation"): ``<!-- docs-test: fast -->`` runs it in the fast tier,
``<!-- docs-test: slow -->`` in the slow one, ``<!-- docs-test: skip: REASON -->`` excludes it for that reason;
``; shrink: A => B | C => D`` after ``fast`` or ``slow`` runs it with those replacements (a reader's step counts
and data sizes cut to a test's), each of which must still match.
Each runs as a script in a fresh Python process (the examples import what they use, as a reader's script would),
in an empty folder beside a ``shared`` link to the data folder, so ``../shared/data`` means what it means beside a
checkout; Hub ids of the bundled MiniLM resolve offline from a Hub cache that holds it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dependencies import README_INSTALL

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = (ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")))
MARKER = re.compile(r"<!-- docs-test: (?P<mode>fast|slow|skip)(?P<rest>.*?) -->")
# The Hub models the examples name, served from the bundled copy (huggingface_hub's cache layout).
BUNDLED_HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CACHE_REVISION = "0" * 40
TIMEOUT_S = {"fast": 180, "slow": 1800}


@dataclass(frozen=True)
class Example:
    """One ```` ```python ```` block: where it starts, its marker (``mode`` None: none or a malformed one), the
    reason it is skipped, the replacements that shrink it to a test's size, and its code."""

    path: Path
    line: int
    mode: str | None
    reason: str | None
    shrink: tuple[tuple[str, str], ...]
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_marker(line: str) -> tuple[str | None, str | None, tuple[tuple[str, str], ...]]:
    """(mode, skip reason, shrink replacements) of a marker line; mode None where it is not a valid marker."""
    marker = MARKER.fullmatch(line.strip())
    if marker is None:
        return None, None, ()
    mode, rest = marker["mode"], marker["rest"]
    if mode == "skip":
        reason = rest.removeprefix(": ").strip()
        return (mode, reason, ()) if rest.startswith(": ") and reason else (None, None, ())
    if not rest:
        return mode, None, ()
    pairs = [pair.split(" => ") for pair in rest.removeprefix("; shrink: ").split(" | ")]
    if not rest.startswith("; shrink: ") or any(len(pair) != 2 or not pair[0] for pair in pairs):
        return None, None, ()
    return mode, None, tuple((old, new) for old, new in pairs)


def python_examples(path: Path) -> list[Example]:
    """The ```` ```python ```` blocks of one Markdown file, with the marker on the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples = []
    for start, line in enumerate(lines):
        if not line.startswith("```python"):
            continue
        end = next(index for index in range(start + 1, len(lines)) if lines[index].startswith("```"))
        mode, reason, shrink = parse_marker(lines[start - 1]) if start else (None, None, ())
        examples.append(Example(path, start + 1, mode, reason, shrink, "\n".join(lines[start + 1:end])))
    return examples


EXAMPLES = [example for path in DOC_FILES for example in python_examples(path)]


def _param(example: Example):
    if example.mode == "slow":
        return pytest.param(example, marks=pytest.mark.slow, id=example.name)
    if example.mode == "skip":
        return pytest.param(example, marks=pytest.mark.skip(reason=f"{example.name}: {example.reason}"),
                            id=example.name)
    return pytest.param(example, id=example.name)


def test_every_python_example_is_run_or_excluded_with_a_reason():
    assert len(EXAMPLES) >= 7  # the parser found the pages' examples
    unmarked = [example.name for example in EXAMPLES if example.mode is None]
    assert unmarked == [], (
        f"put <!-- docs-test: fast|slow[; shrink: A => B | ...] --> or <!-- docs-test: skip: REASON --> on the line "
        f"before: {unmarked}"
    )


def test_markers_parse():
    assert parse_marker("<!-- docs-test: fast -->") == ("fast", None, ())
    assert parse_marker("<!-- docs-test: skip: needs the Hub -->") == ("skip", "needs the Hub", ())
    assert parse_marker("<!-- docs-test: slow; shrink: steps=200 => steps=2 | limit=9 => limit=1 -->") == (
        "slow", None, (("steps=200", "steps=2"), ("limit=9", "limit=1")))
    for malformed in ("<!-- docs-test: skip -->", "<!-- docs-test: fast; shrink: a -->", "<!-- docs-test: later -->",
                      "<!-- docs-test: slow, but -->"):
        assert parse_marker(malformed)[0] is None, malformed


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory, minilm_path) -> Path:
    """A Hub cache in which the bundled all-MiniLM-L6-v2 is the Hub's ``sentence-transformers/all-MiniLM-L6-v2``."""
    cache = tmp_path_factory.mktemp("hub-cache")
    repository = cache / f"models--{BUNDLED_HUB_MODEL.replace('/', '--')}"
    snapshot = repository / "snapshots" / CACHE_REVISION
    for file in minilm_path.rglob("*"):
        if file.is_file():
            link = snapshot / file.relative_to(minilm_path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(file)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(CACHE_REVISION)
    return cache


@pytest.mark.parametrize("example", [_param(example) for example in EXAMPLES if example.mode is not None])
def test_doc_example_runs(example: Example, tmp_path, hub_cache, request):
    work = tmp_path / "work"
    work.mkdir()
    if "../shared/" in example.code:
        data = request.getfixturevalue("shared_data_dir")  # skips, saying why, where the data folder is missing
        (tmp_path / "shared").symlink_to(data.parent, target_is_directory=True)
    code = example.code
    for old, new in example.shrink:
        assert old in code, f"{example.name}: its shrink replaces {old!r}, no longer in the example"
        code = code.replace(old, new)
    script = work / "example.py"
    script.write_text(code + "\n", encoding="utf-8")
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # this checkout's package, ahead of whichever one the environment has installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S[example.mode])
    assert result.returncode == 0, f"{example.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-6000:]}"


def fedgrow_commands(path: Path) -> list[str]:
    """The ``fedgrow ...`` command lines of one Markdown file's ```` ```bash ```` blocks (continuations joined)."""
    commands, in_bash = [], False
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("```"):
            in_bash = not in_bash and line.startswith("```bash")
        elif in_bash and line.startswith("fedgrow "):
            commands.append(line)
    return commands


FEDGROW_COMMANDS = [(path, command) for path in DOC_FILES for command in fedgrow_commands(path)]


@pytest.mark.parametrize("command", [pytest.param(command, id=f"{path.relative_to(ROOT)}: {command[:60]}")
                                     for path, command in FEDGROW_COMMANDS])
def test_doc_fedgrow_command_parses(command: str):
    """A command of the pages names a subcommand and options that exist, with values they accept (parsed, not run)."""
    from fedgrow_hf.cli import build_parser

    argv = shlex.split(command, comments=True)[1:]
    args, rest = build_parser().parse_known_args(argv)
    sub = argparse.ArgumentParser(prog=f"fedgrow {args.command}", exit_on_error=False)
    importlib.import_module(f"fedgrow_hf.cli.{args.command}").add_arguments(sub)
    sub.parse_args(rest)


def test_the_pages_show_fedgrow_commands():
    assert {command.split()[1] for _, command in FEDGROW_COMMANDS} >= {"grow", "simulate", "merge", "card",
                                                                       "push", "reproduce"}


def test_the_docs_site_builds_with_warnings_as_errors(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material is not installed (the dev extra brings it)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "operator" / "index.html").is_file()


def test_readme_development_commands_are_what_ci_runs():
    """The README's Development section is CI's list: every command in it is a line of .ci/run, in its order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    section = readme.split("## Development", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in block.splitlines() if line.strip()]
    assert README_INSTALL in commands and "python -m pytest -q" in commands and "python -m pytest -q -m slow" in commands
    missing = [command for command in commands if command not in ci_lines]
    assert missing == [], f"README's Development commands that .ci/run does not run: {missing}"
    assert sorted(commands, key=ci_lines.index) == commands, "README lists .ci/run's commands in another order"
