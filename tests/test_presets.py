"""The comparison presets build exactly the configs they were measured with.

``golden/presets.json`` holds, per preset, the built federation config (``FederationConfig.to_dict()`` with the
data folder ``/data``) and the comparison's settings, as the Python builders made them before the presets became
data. A kept run is reused by ``fedgrow reproduce --resume`` only if its config is equal to the preset's, so a
value changed by accident would silently rerun a long comparison, or mix two settings in one report. A
deliberate change edits the preset and this file together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedgrow_hf.experiment.config import ConfigError, FederationConfig, read_config_file
from fedgrow_hf.reproduce.presets import PRESET_FOLDER, PRESETS, ComparisonSettings, preset_config
from fedgrow_hf.reproduce.runner import load_comparison

GOLDEN = json.loads((Path(__file__).parent / "golden" / "presets.json").read_text(encoding="utf-8"))
DEMO_FOLDER = Path(__file__).parents[1] / "examples" / "configs"
SETTINGS = ("summary", "budget", "seeds", "learning_rate_origin", "methods", "partitions", "scaling")


def _exact(value: object) -> str:
    """JSON with sorted keys: equal only if every value is, ``300`` and ``300.0`` told apart."""
    return json.dumps(value, sort_keys=True)


def test_the_golden_file_covers_every_preset():
    assert sorted(GOLDEN) == sorted(PRESETS)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_preset_builds_the_config_it_was_measured_with(name):
    built = FederationConfig.from_dict(preset_config(name, "/data")).to_dict()
    assert _exact(built) == _exact(GOLDEN[name]["config"])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_preset_keeps_its_comparison_settings(name):
    preset = PRESETS[name]
    settings = {setting: getattr(preset.settings, setting) for setting in SETTINGS}
    assert _exact(settings) == _exact({setting: GOLDEN[name][setting] for setting in SETTINGS})


def test_the_data_folder_is_joined_as_given():
    """``--data-dir ../shared/data`` gives ``../shared/data/agnews``, not an absolute path: the kept runs of
    ``fedgrow reproduce paper-agnews`` were measured with that string in their config."""
    assert preset_config("paper-agnews", "../shared/data")["data"]["source"] == "../shared/data/agnews"


def test_one_name_per_experiment():
    """Every experiment's file is named as its config (``name``), and no two experiments share a name: the
    ``fedgrow simulate`` demos were once named as three presets. Their earlier names are links to them."""
    files = [path for path in [*DEMO_FOLDER.glob("*.toml"), *PRESET_FOLDER.glob("*.toml")] if not path.is_symlink()]
    names = [read_config_file(path)["name"] for path in files]
    assert names == [path.stem for path in files] and len(set(names)) == len(names)
    links = {path.name: path.readlink().as_posix() for path in DEMO_FOLDER.glob("*.toml") if path.is_symlink()}
    assert links == {"tiny.toml": "demo-tiny.toml", "text-small.toml": "demo-text.toml",
                     "vision-small.toml": "demo-vision.toml"}
    assert FederationConfig.load(DEMO_FOLDER / "tiny.toml") == FederationConfig.load(DEMO_FOLDER / "demo-tiny.toml")


def _config_file(tmp_path: Path, reproduce: str) -> Path:
    """The demo-tiny config with a ``[reproduce]`` table, its data where the demo's is."""
    path = tmp_path / "mine.toml"
    demo = (DEMO_FOLDER / "demo-tiny.toml").read_text(encoding="utf-8")
    source = FederationConfig.load(DEMO_FOLDER / "demo-tiny.toml").data.source
    path.write_text(demo.replace('"../../../shared/data/sst2"', json.dumps(source)) + f"\n[reproduce]\n{reproduce}\n",
                    encoding="utf-8")
    return path


def test_a_config_file_may_carry_its_comparison(tmp_path):
    path = _config_file(tmp_path, 'seeds = [4, 7]\nmethods = ["fed-grow", "own-source"]')
    comparison = load_comparison(str(path), "/unused")
    assert comparison.settings.seeds == (4, 7) and comparison.settings.methods == ("fed-grow", "own-source")
    assert comparison.settings.summary.startswith("federation config")  # what the table leaves out: the defaults
    assert comparison.config == FederationConfig.load(path)  # the federation ignores the table
    bare = load_comparison(str(DEMO_FOLDER / "demo-tiny.toml"), "/unused").settings
    assert bare.seeds == (0, 1, 2) and bare.learning_rate_origin == "as set in the config file"


def test_a_preset_file_is_its_preset():
    """Named by its path, a preset still takes its data from the data folder, not from its own folder."""
    by_path = load_comparison(str(PRESET_FOLDER / "tiny.toml"), "/data")
    assert by_path == load_comparison("tiny", "/data") and by_path.config.data.source == "/data/sst2"


@pytest.mark.parametrize(("table", "expected"), [
    ('method = ["fed-grow"]', "unknown keys in \\[reproduce\\].*'method' -> 'methods'"),
    ('methods = ["fed-grwo"]', "unknown method 'fed-grwo'; did you mean 'fed-grow'"),
    ("seeds = [0, 0]", "none repeated"),
    ("seeds = [-1]", "none repeated"),
    ('seeds = ["0"]', "reproduce.seeds=.* must be a list"),
    ('partitions = {iid = {partiton = "iid"}}', "'partiton' -> 'partition'"),
    ('scaling = {rounds = [99]}', r"reproduce.scaling=.* must be a table \(each value a list of 2 values\)"),
])
def test_a_wrong_comparison_setting_is_refused_by_name(tmp_path, table, expected):
    with pytest.raises(ConfigError, match=expected):
        load_comparison(str(_config_file(tmp_path, table)), "/unused")


def test_comparison_settings_round_trip_through_their_table():
    for preset in PRESETS.values():
        table = json.loads(json.dumps({name: value for name, value in vars(preset.settings).items()
                                       if value is not None}))
        assert ComparisonSettings.from_table(table, preset.name) == preset.settings


def test_a_decoder_federation_is_refused_by_the_comparison_with_what_to_run_instead():
    """fedgrow reproduce scores classifiers on a labelled test split; a language-model config says so at once."""
    with pytest.raises(ValueError, match=r"grows llama language models: fedgrow reproduce compares classifiers .* "
                                         r"fedgrow simulate"):
        load_comparison(str(Path(__file__).parents[1] / "examples" / "configs" / "tiny-llama.toml"), "unused")


# paper-agnews' diagnostics: each changes [model].ligo only (and the methods that change makes possible or
# impossible), so its runs pair with the preset's. The preset grows every party's head; both diagnostics start
# fresh heads, as the preset did when they were measured, and run the shared-head method a fresh head allows.
FRESH_HEADS_METHODS = ("fed-grow-shared-head",)
DIAGNOSTICS = {
    "paper-agnews-fresh-heads.toml": {},
    "paper-agnews-plain-width-steps.toml": {"width_step": "plain"},
}


@pytest.mark.parametrize("name", sorted(DIAGNOSTICS))
def test_a_paper_agnews_diagnostic_is_the_preset_but_for_its_one_change(name):
    """A diagnostic in ``benchmarks/diagnostics/`` changes one setting of paper-agnews (``[model].ligo``), so its
    runs pair with the preset's: everything else, the comparison's settings included, is the preset's (its summary
    and budget describe it)."""
    path = Path(__file__).parents[1] / "benchmarks" / "diagnostics" / name
    diagnostic, preset = load_comparison(str(path), "/unused"), load_comparison("paper-agnews", "/data")
    assert diagnostic.config.model.ligo == DIAGNOSTICS[name] and preset.config.model.ligo == {"grow_heads": True}
    assert Path(diagnostic.config.data.source).resolve() == (Path(__file__).parents[2] / "shared" / "data" / "agnews")
    changed = {"name": None, "model": {"ligo": None}, "data": {"source": None}}

    def without_changes(config: dict, changes: dict) -> dict:
        return {key: without_changes(value, changes[key]) if isinstance(changes.get(key), dict) else value
                for key, value in config.items() if key not in changes or isinstance(changes[key], dict)}

    assert without_changes(diagnostic.config.to_dict(), changed) == without_changes(preset.config.to_dict(), changed)
    assert tuple(diagnostic.settings.methods) == tuple(preset.settings.methods) + FRESH_HEADS_METHODS
    assert all(getattr(diagnostic.settings, setting) == getattr(preset.settings, setting)
               for setting in SETTINGS if setting not in ("methods", "summary", "budget"))
