"""The federation config: one TOML or JSON file describing a whole Fed-Grow run.

Schema (every table but ``[model]``, ``[data]`` and ``[[parties]]`` is optional)::

    name = "text-small"            # label of the run
    seed = 0                       # seeds initialisation (operators, task heads) and training (batch order)
    data_seed = 0                  # seeds the data: subset, partition, held-out splits, and the parties'
                                   # source preparation (random, distilled or pretrained); default: seed

    [federation]
    rounds = 5                     # phase 1: federated Global-LiGO training rounds (0: skip phase 1)
    local_steps = 20               # optimizer steps per party per round
    min_train_nodes = 2            # a round needs at least this many valid updates
    round_timeout = 600            # seconds the server waits for replies
    round_retries = 1              # times a round with too few valid updates is run again
    max_update_bytes = 0           # size bound of one update; 0: exactly the Global-LiGO's size
    max_num_examples = 1000000     # a reply claiming more examples than this is dropped (it would own the mean)
    update_norm_bound = 10.0       # drop an update farther (L2) from the round's centre (the current state;
                                   # federated phase 2's round 1: the replies' median) than this times
                                   # max(1, its norm); 0: no bound
    update_clip_factor = 1.0       # clip every update's distance to this times the round's median distance,
                                   # and its example count to this times the median count (robust to a
                                   # party that ratchets the bound up; see federated/clipping.py); 0: off
    aggregator = "fedavg"          # "fedavg" (example-weighted); robust: "fedmedian", "fedtrimmedavg"
    trim_fraction = 0.2            # "fedtrimmedavg": fraction cut at each end per coordinate (refused where
                                   # it cuts nothing: int(trim_fraction x parties) = 0)
    phase2 = "local"               # "local": each party merges and fine-tunes alone (LiGO's recipe: a short
                                   # operator phase, then the grown model is trained);
                                   # "federated": FedAvg of the merged grown models;
                                   # "merge": no fine-tuning: the operator-only regime of the Fed-Grow paper
                                   # (many operator rounds; each party merges its final operator once and
                                   # keeps that model); "none": phase 1 only
    local_ligo_rounds = 0          # phase-1 rounds in which a party's Local-LiGO trains (0: every round;
                                   # 1: the first only, then it stays fixed, as in the authors' code)
    share_intermediate = false     # true: after round 1 every party sends its grown intermediate model once,
                                   # the server averages them and every party then grows from that average
                                   # (what the authors' code does; it shares a model)
    finetune_steps = 20            # phase 2 steps (per round, for "federated")
    finetune_learning_rate = 0.0   # phase 2's learning rate (full-model training, Fed-Scratch included);
                                   # 0: [training].learning_rate, the operator's
    finetune_rounds = 2            # phase 2 rounds for "federated"
    finetune_init = "grown"        # phase 2 starts from the merged grown model; "random": from a seeded
                                   # random target (Fed-Scratch baseline; allows rounds = 0)
    dp_noise_multiplier = 0.0      # > 0: Flower's server-side fixed-clipping DP on the Global-LiGO
    dp_clipping_norm = 1.0
    # opt-in Flower SecAgg+ on phase 1: the server sees only the sum of the masked, quantised updates
    # (so it can validate only the aggregate); not combinable with dp_noise_multiplier > 0, nor --resume
    secure_aggregation = {enabled = false, num_shares = 3, reconstruction_threshold = 2, max_weight = 1000.0,
                          clipping_range = 8.0, quantization_range = 4194304}
    # max_weight bounds a party's example count; clipping_range bounds |weight/max_weight * value|;
    # party_metrics: what each party reveals in clear beside its masked update and after local phase 2:
    # "exact" (its example count and metrics), "coarse" (count to 2 significant digits, metrics to 2
    # decimals; the count also weights the average), "none" (nothing; an unweighted average; phase 2: its id)

    [model]
    family = "bert"                # "bert" (sequence classification), "vit" (image classification) or
                                   # "llama" (a causal language model of [data]'s text: LlamaForCausalLM)
    num_labels = 2                 # a classifier's classes (a language model has none)
    target = {num_hidden_layers = 8, hidden_size = 512, num_attention_heads = 8, intermediate_size = 2048}
    intermediate = {num_hidden_layers = 6, hidden_size = 384, num_attention_heads = 12, intermediate_size = 1536}
    ligo = {init_noise_std = 0.0}  # any other LiGOConfig fields

    [data]
    source = "../shared/data/sst2" # a local file/dir, an MNIST IDX dir, or a Hub dataset id
    split = "train"                # the split shared out among the parties
    limit = 2000                   # keep a seeded random subset of this many examples
    test_split = "test"            # the common split `fedgrow reproduce` scores every final model on
    test_limit = 0                 # > 0: score on a seeded random subset of that many test examples
    eval_fraction = 0.2            # each party holds out this fraction of its share for evaluation
    partition = "dirichlet"        # or "iid"
    alpha = 0.5                    # Dirichlet concentration (small: strongly non-IID)
    min_size = 10                  # Dirichlet: redraw until every party holds this many examples
    min_class_size = 0             # ... and this many of every class (a one-class party has nothing to learn)
    max_length = 64                # text: tokens (llama: tokens per block of the packed text)
    tokenizer = ""                 # text: defaults to the first party's source; "minilm": the bundled one
    image_size = 32                # vision
    num_channels = 1
    source_cache = "~/.cache/fedgrow-hf/sources"   # pretrained ViT / distilled BERT sources are cached here

    [training]                     # keyword arguments of every party's transformers.TrainingArguments
    learning_rate = 1e-3
    per_device_train_batch_size = 16

    [[parties]]                    # one table per party: where its private source model comes from
    source = "minilm"              # a path or Hub id; "minilm": the bundled all-MiniLM-L6-v2
    [[parties]]
    derive = {num_hidden_layers = 3, hidden_size = 192}   # fedgrow_hf.sources: smaller model derived
                                   # from `from` (default: minilm); add distill_steps = N to distil it
                                   # from its parent on the party's own training sentences
    [[parties]]
    random = {num_hidden_layers = 2, hidden_size = 32, num_attention_heads = 4, intermediate_size = 64}
    [[parties]]                    # a source trained from scratch on the party's own training share (the
                                   # Fed-Grow authors' round 1; BERT: a classifier; llama: a causal language
                                   # model of its text, same recipe keys; ViT: see pretrain_vit_source)
    pretrain = {num_hidden_layers = 2, hidden_size = 256, num_attention_heads = 8, intermediate_size = 256,
                epochs = 10, batch_size = 32, learning_rate = 1e-4, weight_decay = 0.05}

A ``llama`` federation's data is text without labels (:func:`fedgrow_hf.data.load_text_corpus`: a text
file, a folder, a table's ``text_column``, a Hub dataset), shared out ``iid`` and packed into blocks of
``max_length`` tokens by ``[data].tokenizer``; ``[model].target`` names its ``vocab_size`` (the
tokenizer's at least) and ``num_key_value_heads`` like any Llama config.

Relative paths are resolved against the config file's directory. Every value is checked against
the type its field declares (an integer field takes no ``1.5``, ``"3"`` or ``true``; a number field
no NaN) and against its range (``bounded`` in the field declarations) before anything runs.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import sys
import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from transformers import BertConfig, LlamaConfig, PretrainedConfig, TrainingArguments, ViTConfig

from ..tuners.ligo.config import LiGOConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

logger = logging.getLogger(__name__)

PHASE2_MODES = ("local", "federated", "merge", "none")
FINETUNE_INITS = ("grown", "random")
AGGREGATORS = ("fedavg", "fedmedian", "fedtrimmedavg")
# What a party discloses in clear under SecAgg+, in phase 1 and local phase 2 (see disclosure.py).
PARTY_METRICS = ("exact", "coarse", "none")


# Largest seed every seeded library takes (numpy's seeds are 32-bit).
MAX_SEED = 2**32 - 1
RANGE = "range"


class ConfigError(ValueError):
    """The federation config is invalid; the message names the field."""


@dataclass(frozen=True)
class Range:
    """The values a numeric field may take: ``low``/``high`` bounds, each inclusive or not."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value >= self.low if self.low_inclusive else value > self.low)
        below = self.high is None or (value <= self.high if self.high_inclusive else value < self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>=' if self.low_inclusive else '>'} {self.low}"
        return f"in {'[' if self.low_inclusive else '('}{self.low}, {self.high}{']' if self.high_inclusive else ')'}"


def bounded(default: Any, low: float | None = None, high: float | None = None, **inclusive: bool) -> Any:
    """A dataclass field whose value must lie in ``Range(low, high, **inclusive)``; checked by ``validate``."""
    return field(default=default, metadata={RANGE: Range(low, high, **inclusive)})


@dataclass
class FederationSettings:
    rounds: int = bounded(3, 0)
    local_steps: int = bounded(10, 1)
    min_train_nodes: int = bounded(2, 1)
    round_timeout: float = bounded(600.0, 0, low_inclusive=False)
    round_retries: int = bounded(1, 0)
    max_update_bytes: int = bounded(0, 0)
    max_num_examples: int = bounded(1_000_000, 1)
    update_norm_bound: float = bounded(10.0, 0)
    update_clip_factor: float = bounded(1.0, 0)
    aggregator: str = "fedavg"
    trim_fraction: float = bounded(0.2, 0, 0.5, high_inclusive=False)
    phase2: str = "local"
    finetune_steps: int = bounded(10, 1)
    finetune_learning_rate: float = bounded(0.0, 0)
    finetune_rounds: int = bounded(2, 1)
    finetune_init: str = "grown"
    local_ligo_rounds: int = bounded(0, 0)
    share_intermediate: bool = False
    dp_noise_multiplier: float = bounded(0.0, 0)
    dp_clipping_norm: float = bounded(1.0, 0, low_inclusive=False)
    secure_aggregation: dict[str, Any] = field(default_factory=dict)


@dataclass
class SecureAggregationSettings:
    """``[federation].secure_aggregation``: the parameters of Flower's ``SecAggPlusWorkflow``.

    ``num_shares`` and ``reconstruction_threshold`` are counts (ints) or shares (floats in (0, 1]),
    as Flower takes them; :meth:`FederationConfig.validate` checks which.
    """

    enabled: bool = False
    num_shares: int | float = bounded(3, 0, low_inclusive=False)
    reconstruction_threshold: int | float = bounded(2, 0, low_inclusive=False)
    max_weight: float = bounded(1000.0, 0, low_inclusive=False)
    clipping_range: float = bounded(8.0, 0, low_inclusive=False)
    quantization_range: int = bounded(4194304, 1)
    party_metrics: str = "coarse"


@dataclass
class ModelSettings:
    family: str = "bert"
    num_labels: int = bounded(2, 2)  # a classifier; transformers would build a regression head for 1
    target: dict[str, Any] = field(default_factory=dict)
    intermediate: dict[str, int] = field(default_factory=dict)
    ligo: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSettings:
    source: str = ""
    split: str = "train"
    test_split: str = "test"
    test_limit: int = bounded(0, 0)
    limit: int | None = bounded(None, 1)
    eval_fraction: float = bounded(0.2, 0, 1, low_inclusive=False, high_inclusive=False)
    partition: str = "iid"
    alpha: float = bounded(0.5, 0, low_inclusive=False)
    min_size: int = bounded(10, 1)
    min_class_size: int = bounded(0, 0)
    text_column: str = "sentence"
    label_column: str = "label"
    max_length: int = bounded(64, 1)
    tokenizer: str = ""
    image_size: int = bounded(32, 1)
    num_channels: int = bounded(1, 1)
    source_cache: str = "~/.cache/fedgrow-hf/sources"


# What a party's ``derive`` table may hold (fedgrow_hf.sources.derive_bert_source's shape and its parent),
# and the settings of a ``pretrain`` table that are its training recipe rather than the source's shape: a
# BERT's or a decoder's (fedgrow_hf.sources.scratch_recipe), a ViT's.
DERIVE_KEYS = {"from", "distill_steps", "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads"}
BERT_PRETRAIN_RECIPE = ("epochs", "batch_size", "learning_rate", "weight_decay", "max_grad_norm")
VIT_PRETRAIN_SETTINGS = ("steps", "data")
# What a party's data is: labelled sentences, labelled images, or running text for a language model.
TEXT, IMAGES, CORPUS = "text", "images", "corpus"


@dataclass(frozen=True)
class Family:
    """What ``[model].family`` stands for: the transformers config of its models, what its parties' data is,
    the settings of its ``pretrain`` tables that are their recipe, and what every model of it is built with."""

    config_class: type[PretrainedConfig]
    data: str
    pretrain_settings: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def classifies(self) -> bool:
        """Whether its models are classifiers (with labels and ``num_labels``), not language models."""
        return self.data != CORPUS


NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
FAMILIES: dict[str, Family] = {
    "bert": Family(BertConfig, TEXT, BERT_PRETRAIN_RECIPE, NO_DROPOUT),
    "vit": Family(ViTConfig, IMAGES, VIT_PRETRAIN_SETTINGS, NO_DROPOUT),
    "llama": Family(LlamaConfig, CORPUS, BERT_PRETRAIN_RECIPE),
}


@dataclass
class PartySettings:
    source: str = ""
    derive: dict[str, Any] | None = None
    random: dict[str, Any] | None = None
    pretrain: dict[str, Any] | None = None


@dataclass
class FederationConfig:
    """A whole Fed-Grow run; see the module docstring for the file schema."""

    name: str = "fedgrow"
    seed: int = bounded(0, 0, MAX_SEED)
    data_seed: int | None = bounded(None, 0, MAX_SEED)
    federation: FederationSettings = field(default_factory=FederationSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    training: dict[str, Any] = field(default_factory=dict)
    parties: list[PartySettings] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A fixed int from the start: a comparison that varies ``seed`` keeps the data and sources.
        if self.data_seed is None:
            self.data_seed = self.seed

    @property
    def num_parties(self) -> int:
        return len(self.parties)

    @property
    def family(self) -> Family:
        """What ``[model].family`` stands for (checked by :meth:`validate`)."""
        return FAMILIES[self.model.family]

    @property
    def secure_aggregation(self) -> SecureAggregationSettings:
        return _section(SecureAggregationSettings, self.federation.secure_aggregation, "federation.secure_aggregation")

    @classmethod
    def load(cls, path: str | Path) -> FederationConfig:
        """Read a ``.toml`` or ``.json`` config, resolving relative paths against its folder."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"federation config {path} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot parse {path}: {error}") from error
        except RecursionError as error:
            raise ConfigError(f"cannot parse {path}: its tables or arrays are nested too deeply") from error
        config = cls.from_dict(raw)
        config.resolve_paths(path.parent)
        return config

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FederationConfig:
        check_known_keys(raw, {f.name for f in fields(cls)}, "top-level config keys")
        parties = raw.get("parties", [])
        if not isinstance(parties, list):
            raise ConfigError(f"parties must be a list of tables ([[parties]]), got {parties!r}")
        config = cls(
            name=raw.get("name", "fedgrow"),
            seed=raw.get("seed", 0),
            data_seed=raw.get("data_seed"),
            federation=_section(FederationSettings, raw.get("federation", {}), "federation"),
            model=_section(ModelSettings, raw.get("model", {}), "model"),
            data=_section(DataSettings, raw.get("data", {}), "data"),
            training=raw.get("training", {}),
            parties=[_section(PartySettings, party, f"parties[{i}]") for i, party in enumerate(parties)],
        )
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose type, range or combination is wrong.

        Types and ranges come first and from the field declarations, so that the checks of
        combinations below only ever compare numbers of the declared kinds.
        """
        check_values(self)
        for section, name in ((self.federation, "federation"), (self.model, "model"), (self.data, "data")):
            check_values(section, name)
        for i, party in enumerate(self.parties):
            check_values(party, f"parties[{i}]")
        check_values(self.secure_aggregation, "federation.secure_aggregation")
        self._validate_combinations()

    def _validate_combinations(self) -> None:
        fed, model = self.federation, self.model
        if model.family not in FAMILIES:
            raise ConfigError(f"model.family={model.family!r} is not one of {tuple(FAMILIES)}")
        _check_model_tables(self)
        if not model.target or not model.intermediate:
            raise ConfigError("model.target and model.intermediate (Dual-LiGO's common shape) are required")
        if fed.phase2 not in PHASE2_MODES:
            raise ConfigError(f"federation.phase2={fed.phase2!r} is not one of {PHASE2_MODES}")
        if fed.aggregator not in AGGREGATORS:
            raise ConfigError(f"federation.aggregator={fed.aggregator!r} is not one of {AGGREGATORS}")
        if fed.finetune_init not in FINETUNE_INITS:
            raise ConfigError(f"federation.finetune_init={fed.finetune_init!r} is not one of {FINETUNE_INITS}")
        if fed.finetune_init == "random" and fed.phase2 != "federated":
            raise ConfigError("federation.finetune_init='random' (Fed-Scratch) needs federation.phase2='federated'")
        scratch = fed.finetune_init == "random"
        if fed.rounds < (0 if scratch else 1):
            raise ConfigError(f"federation.rounds={fed.rounds}: rounds must be >= 1 (>= 0 with finetune_init='random')")
        if not self.parties:
            raise ConfigError("no [[parties]]: a federation needs at least one party")
        if not 1 <= fed.min_train_nodes <= self.num_parties:
            raise ConfigError(
                f"federation.min_train_nodes={fed.min_train_nodes} must be between 1 and the {self.num_parties} parties"
            )
        if fed.share_intermediate and (self.secure_aggregation.enabled or fed.rounds < 2):
            raise ConfigError(
                "federation.share_intermediate needs rounds >= 2 (the intermediates are sent after round 1 and used "
                "from round 2) and no secure aggregation (the server averages the intermediates in clear)"
            )
        _check_trimmed_mean(fed, self.num_parties)
        if self.secure_aggregation.enabled and fed.dp_noise_multiplier > 0:
            raise ConfigError(
                "federation.secure_aggregation cannot be combined with federation.dp_noise_multiplier > 0: "
                "Flower's server-side DP clips each update, which the server cannot see under SecAgg+"
            )
        if self.secure_aggregation.party_metrics not in PARTY_METRICS:
            raise ConfigError(
                f"federation.secure_aggregation.party_metrics={self.secure_aggregation.party_metrics!r} "
                f"is not one of {PARTY_METRICS}"
            )
        _check_secure_aggregation_counts(self.secure_aggregation)
        if self.data.partition not in ("iid", "dirichlet"):
            raise ConfigError(f"data.partition={self.data.partition!r} is not 'iid' or 'dirichlet'")
        if self.data.partition == "dirichlet" and not self.family.classifies:
            raise ConfigError(f"data.partition='dirichlet' shares out examples by their label, and a "
                              f"{model.family!r} federation's text has none: use partition = 'iid'")
        if not self.data.source:
            raise ConfigError("data.source (a data path or a Hub dataset id) is required")
        for i, party in enumerate(self.parties):
            given = [bool(party.source), party.derive is not None, party.random is not None, party.pretrain is not None]
            if sum(given) != 1:
                raise ConfigError(f"parties[{i}] needs exactly one of source, derive, random, pretrain")

    def resolve_paths(self, base: Path) -> None:
        """Make relative local paths absolute (Hub ids, which do not exist locally, are kept)."""
        self.data.source = _resolve(self.data.source, base)
        self.data.tokenizer = _resolve(self.data.tokenizer, base)
        for party in self.parties:
            party.source = _resolve(party.source, base)
            if party.derive and party.derive.get("from"):
                party.derive["from"] = _resolve(party.derive["from"], base)


def _section(kind: type, raw: dict[str, Any], name: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{name}] must be a table of settings, got {raw!r}")
    check_known_keys(raw, {f.name for f in fields(kind)}, f"keys in [{name}]")
    return kind(**raw)


def check_known_keys(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    """:class:`ConfigError` naming the keys of ``raw`` not in ``known``, each with the closest known name."""
    unknown = sorted(map(str, set(raw) - known))
    if not unknown:
        return
    close = {key: difflib.get_close_matches(key, sorted(known), n=1) for key in unknown}
    hints = [f"{key!r} -> {match[0]!r}" for key, match in close.items() if match]
    hint = f"did you mean {', '.join(hints)}?" if hints else f"known: {sorted(known)}"
    raise ConfigError(f"unknown {where}: {unknown}; {hint}")


def _check_model_tables(config: FederationConfig) -> None:
    """The model shapes are keyword arguments of the family's transformers config, ``[model].ligo`` those of
    :class:`LiGOConfig` and ``[training]`` those of ``TrainingArguments``: a misspelt key would otherwise be ignored (a 12-layer default grown) or fail deep
    in a run; a ``[training]`` value must be of its default's kind (``learning_rate = "fast"``)."""
    model_keys = set(config.family.config_class().to_dict())
    check_known_keys(config.model.target, model_keys, "keys in [model].target")
    check_known_keys(config.model.intermediate, model_keys, "keys in [model].intermediate")
    check_known_keys(config.model.ligo, {spec.name for spec in fields(LiGOConfig) if spec.init}, "keys in [model].ligo")
    party_tables = {"random": model_keys, "derive": DERIVE_KEYS,
                    "pretrain": model_keys | set(config.family.pretrain_settings)}
    for i, party in enumerate(config.parties):
        for kind, known in party_tables.items():
            table = getattr(party, kind)
            if table is not None:
                check_known_keys(table, known, f"keys in parties[{i}].{kind}")
    arguments = {spec.name: spec for spec in fields(TrainingArguments) if spec.init}
    check_known_keys(config.training, set(arguments), "keys in [training]")
    for key, value in config.training.items():
        default = arguments[key].default
        kind = float if isinstance(default, float) else type(default)
        if kind in (bool, int, float, str) and not _is_of_type(value, kind):
            raise ConfigError(f"training.{key}={value!r} must be {_type_name(kind)}")


def check_values(settings: Any, section: str = "") -> None:
    """Check every field of the dataclass ``settings`` against its annotation and its ``bounded`` range.

    TOML and JSON give ints, floats, strings and booleans as written, and a wrong one would fail
    deep in a run, or silently (``1.5`` steps, ``"3"`` rounds): each must be of the declared type.
    """
    hints = get_type_hints(type(settings))
    for spec in fields(settings):
        name = f"{section}.{spec.name}" if section else spec.name
        value = getattr(settings, spec.name)
        if not _is_of_type(value, hints[spec.name]):
            raise ConfigError(f"{name}={value!r} must be {_type_name(hints[spec.name])}")
        bounds = spec.metadata.get(RANGE)
        if bounds is not None and value is not None and value not in bounds:
            raise ConfigError(f"{name}={value!r} must be {bounds}")


def _is_of_type(value: Any, hint: Any) -> bool:
    """Whether a config value is of the annotated type; an int is no bool, a float any finite number."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_is_of_type(value, option) for option in get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return isinstance(value, int) or math.isfinite(value)
    if origin is dict:
        key_type, value_type = get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(
            _is_of_type(key, key_type) and _is_of_type(item, value_type) for key, item in value.items()
        )
    if origin is list:
        (item_type,) = get_args(hint) or (Any,)
        return isinstance(value, list) and all(_is_of_type(item, item_type) for item in value)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    """How an error names a type: ``an int``, ``a finite number``, ``an int or None`` ..."""
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
             type(None): "absent (null)"}
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(option) for option in get_args(hint))
    if origin is dict:
        return "a table" + (f" of {_type_name(get_args(hint)[1])} values" if get_args(hint) else "")
    if origin is list:
        return "a list"
    if is_dataclass(hint):
        return "a table of settings"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _check_trimmed_mean(fed: FederationSettings, num_parties: int) -> None:
    """``fedtrimmedavg`` cuts ``int(trim_fraction x replies)`` values at each end of every coordinate
    (Flower's ``trim_mean``): refuse a setting that cuts nothing even with every party replying, where the
    configured robust aggregator would silently be a plain mean."""
    if fed.aggregator != "fedtrimmedavg":
        return
    if int(fed.trim_fraction * num_parties) < 1:
        needed = math.ceil(1000 / num_parties) / 1000  # the smallest fraction (to 3 decimals) that trims one
        hint = f"trim_fraction >= {needed:g}" if needed < 0.5 else "no trim_fraction below 0.5 trims any"
        raise ConfigError(
            f"federation.trim_fraction={fed.trim_fraction} with {num_parties} parties trims int({fed.trim_fraction} x "
            f"{num_parties}) = 0 values per side: fedtrimmedavg would be a plain mean; {hint} with "
            f"{num_parties} parties, or use aggregator = 'fedmedian'"
        )
    if int(fed.trim_fraction * fed.min_train_nodes) < 1:
        logger.warning("federation.trim_fraction=%s trims int(%s x %d) = %d values per side with all %d parties, "
                       "but none in a round with only min_train_nodes=%d valid replies (then a plain mean)",
                       fed.trim_fraction, fed.trim_fraction, num_parties, int(fed.trim_fraction * num_parties),
                       num_parties, fed.min_train_nodes)


def _check_secure_aggregation_counts(settings: SecureAggregationSettings) -> None:
    """SecAgg+'s share counts: an int counts parties (more than 2 shares), a float is a share in (0, 1]."""
    for name in ("num_shares", "reconstruction_threshold"):
        value = getattr(settings, name)
        if isinstance(value, float) and not 0 < value <= 1:
            raise ConfigError(f"federation.secure_aggregation.{name}={value!r}: as a share it must be in (0, 1]")
    shares, threshold = settings.num_shares, settings.reconstruction_threshold
    if isinstance(shares, int) and shares != 1 and shares <= 2:
        raise ConfigError(f"federation.secure_aggregation.num_shares={shares!r} must be 1 (all parties) or > 2")
    if isinstance(shares, int) and isinstance(threshold, int) and threshold != 1 and threshold >= shares:
        raise ConfigError(
            f"federation.secure_aggregation.reconstruction_threshold={threshold!r} must be less than num_shares={shares}"
        )


def _resolve(value: str, base: Path) -> str:
    if not value or value == "minilm":
        return value
    candidate = (base / value).expanduser()
    return str(candidate.resolve()) if not Path(value).is_absolute() and candidate.exists() else value
