"""The federation config: one TOML or JSON file describing a whole Fed-Grow run.

Its tables are the dataclasses below (``[federation]``: :class:`FederationSettings`, ``[model]``,
``[data]``, ``[[parties]]``, ``[training]``: ``TrainingArguments``). Each setting carries its own ``help``
(and, where it has them, its range and choices) in its field's metadata: they are the one description of the
schema, rendered into docs/config.md by scripts/config_reference.py (a test keeps the page current) and
enforced by :meth:`FederationConfig.validate`. Every value is checked against the type its field declares
(an integer field takes no ``1.5``, ``"3"`` or ``true``; a number field no NaN), its range and its choices
before anything runs; an unknown key is refused with the closest valid name. Relative paths are resolved
against the config file's folder. A ``[reproduce]`` table is ``fedgrow reproduce``'s
(:mod:`fedgrow_hf.reproduce.presets`), not the federation's.

A ``llama`` federation's data is text without labels (:func:`fedgrow_hf.data.load_text_corpus`: a text
file, a folder, a table's ``text_column``, a Hub dataset), shared out ``iid`` and packed into blocks of
``max_length`` tokens by ``[data].tokenizer``; ``[model].target`` names its ``vocab_size`` (the
tokenizer's at least) and ``num_key_value_heads`` like any Llama config.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import sys
import types
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
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
PARTITIONS = ("iid", "dirichlet")
# What a party discloses in clear under SecAgg+, in phase 1 and local phase 2 (see disclosure.py).
PARTY_METRICS = ("exact", "coarse", "none")


# The table of a config file that ``fedgrow reproduce`` reads (its seeds, methods ...: fedgrow_hf.reproduce.presets)
# and a federation ignores.
COMPARISON_TABLE = "reproduce"

# Largest seed every seeded library takes (numpy's seeds are 32-bit).
MAX_SEED = 2**32 - 1
RANGE = "range"
HELP = "help"  # what docs/config.md says of a setting (scripts/config_reference.py renders it)
CHOICES = "choices"


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


def bounded(default: Any, low: float | None = None, high: float | None = None, *, help: str = "",
            **inclusive: bool) -> Any:
    """A setting whose value must lie in ``Range(low, high, **inclusive)`` (checked by ``validate``), with its
    ``help``: what the schema page (docs/config.md) says of it."""
    return field(default=default, metadata={RANGE: Range(low, high, **inclusive), HELP: help})


def setting(default: Any = MISSING, *, help: str, choices: tuple[str, ...] = (), factory: Any = MISSING) -> Any:
    """A setting with its ``help`` and, for a string, the ``choices`` it must be one of (checked by ``validate``);
    ``factory`` makes a mutable default."""
    metadata = {HELP: help, **({CHOICES: choices} if choices else {})}
    return field(default=default, default_factory=factory, metadata=metadata)


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
class FederationSettings:
    """``[federation]``: the rounds of both phases, how the server aggregates the replies and what it checks."""

    rounds: int = bounded(3, 0, help="phase 1: federated Global-LiGO training rounds (0 only with "
                                     'finetune_init = "random")')
    local_steps: int = bounded(10, 1, help="optimizer steps per party per phase-1 round")
    min_train_nodes: int = bounded(2, 1, help="a round needs at least this many valid updates (at most the number "
                                              "of parties)")
    round_timeout: float = bounded(600.0, 0, low_inclusive=False, help="seconds the server waits for a round's "
                                                                       "replies")
    round_retries: int = bounded(1, 0, help="times a round with too few valid updates is run again")
    max_update_bytes: int = bounded(0, 0, help="size bound of one update; 0: exactly the Global-LiGO's size "
                                                 "(and the task head's, with share_head)")
    max_num_examples: int = bounded(1_000_000, 1, help="a reply claiming more examples than this is dropped (it "
                                                       "would own the weighted mean)")
    update_norm_bound: float = bounded(10.0, 0, help=(
        "drop an update farther (L2) from the round's centre (the current state; federated phase 2's first round: "
        "the replies' median) than this times max(1, its norm); 0: no bound"))
    update_clip_factor: float = bounded(1.0, 0, help=(
        "clip every update's distance to this times the round's median distance, and its example count to this "
        "times the median count (robust to a party that ratchets the bound up; federated/clipping.py); 0: off"))
    aggregator: str = setting("fedavg", choices=AGGREGATORS, help=(
        '"fedavg": the example-weighted mean; robust: "fedmedian", "fedtrimmedavg"'))
    trim_fraction: float = bounded(0.2, 0, 0.5, high_inclusive=False, help=(
        '"fedtrimmedavg": the fraction cut at each end of every coordinate (refused where it cuts nothing: '
        "int(trim_fraction x parties) = 0)"))
    server_learning_rate: float = bounded(1.0, 0, low_inclusive=False, help=(
        "phase 1's server step: the new Global-LiGO is the state the server sent plus this times (the aggregate "
        "minus that state), FedOpt's server learning rate (Flower's FedAvgM without momentum); 1: the aggregate "
        "itself, as in the Fed-Grow paper; above 1 makes up for parties' updates that point different ways, whose "
        "average is shorter than each"))
    phase2: str = setting("local", choices=PHASE2_MODES, help=(
        'after phase 1: "local": each party merges its grown model and fine-tunes it alone (LiGO\'s recipe); '
        '"federated": FedAvg of the merged grown models; "merge": no fine-tuning, each party merges its final '
        'operator once (the Fed-Grow paper\'s operator-only regime); "none": phase 1 only'))
    finetune_steps: int = bounded(10, 1, help='phase-2 optimizer steps per party (per round with "federated")')
    finetune_learning_rate: float = bounded(0.0, 0, help=(
        "phase 2's learning rate (full-model training, Fed-Scratch's included); 0: [training].learning_rate, "
        "the operator's"))
    finetune_rounds: int = bounded(2, 1, help='phase-2 rounds with "federated"')
    finetune_init: str = setting("grown", choices=FINETUNE_INITS, help=(
        'what phase 2 starts from: "grown", the merged grown model; "random", a seeded random target (the '
        'Fed-Scratch baseline: needs phase2 = "federated", allows rounds = 0)'))
    local_ligo_rounds: int = bounded(0, 0, help=(
        "phase-1 rounds in which a party's Local-LiGO trains (0: every round; 1: the first only, then it stays "
        "fixed, as in the Fed-Grow authors' code)"))
    share_intermediate: bool = setting(False, help=(
        "after round 1 every party sends its grown intermediate model once, the server averages them and every "
        "party grows from that average (what the Fed-Grow authors' code does; it shares a model; needs rounds >= 2 "
        "and no secure aggregation)"))
    share_head: bool = setting(False, help=(
        "every phase-1 round the parties' task heads (the classifier growth does not produce) are averaged with "
        "the Global-LiGO, as the Fed-Grow authors' code averages a party's whole state; it shares the head's "
        "weights (num_labels x hidden); classifiers only, no secure aggregation"))
    dp_noise_multiplier: float = bounded(0.0, 0, help=(
        "> 0: Flower's server-side fixed-clipping differential privacy on the Global-LiGO (not with secure "
        "aggregation)"))
    dp_clipping_norm: float = bounded(1.0, 0, low_inclusive=False, help="that differential privacy's clipping norm")
    secure_aggregation: dict[str, Any] = setting(factory=dict, help=(
        "opt-in Flower SecAgg+ on phase 1: a table of the settings of [federation].secure_aggregation"))

    def sent_beyond_global_ligo(self) -> tuple[str, ...]:
        """What else leaves every party in a run of these settings, in words; empty when only the Global-LiGO
        does, as the Fed-Grow paper describes it. Each item is a model or part of one, so a party's model card
        must name it rather than claim that nothing but the Global-LiGO was shared."""
        sent = []
        if self.rounds and self.share_intermediate:
            sent.append("its grown intermediate model (its source through its Local-LiGO), once, after round 1")
        if self.rounds and self.share_head:
            sent.append("its task head, with the Global-LiGO, every operator round")
        if self.phase2 == "federated":
            sent.append("its whole model, every fine-tuning round (phase 2 averages the parties' models)")
        return tuple(sent)


@dataclass
class SecureAggregationSettings:
    """``[federation].secure_aggregation``: the parameters of Flower's ``SecAggPlusWorkflow``. Under it the server
    sees only the sum of the masked, quantised updates, so it can validate only the aggregate."""

    enabled: bool = setting(False, help=(
        "run phase 1 under SecAgg+ (not with dp_noise_multiplier > 0, nor with --resume)"))
    num_shares: int | float = bounded(3, 0, low_inclusive=False, help=(
        "shares of each party's secret: an integer counts parties (1: all of them, else > 2), a float in (0, 1] is "
        "a share of them"))
    reconstruction_threshold: int | float = bounded(2, 0, low_inclusive=False, help=(
        "shares needed to reconstruct a secret: a count less than num_shares, or a share in (0, 1]"))
    max_weight: float = bounded(1000.0, 0, low_inclusive=False, help="bounds a party's example count (its weight)")
    clipping_range: float = bounded(8.0, 0, low_inclusive=False, help=(
        "bounds |weight / max_weight x value| before quantisation"))
    quantization_range: int = bounded(4194304, 1, help="the integer range the clipped values are quantised to")
    party_metrics: str = setting("coarse", choices=PARTY_METRICS, help=(
        'what a party reveals in clear beside its masked update and after local phase 2: "exact" (its example '
        'count and metrics), "coarse" (the count to 2 significant digits, metrics to 2 decimals; the count also '
        'weights the average), "none" (nothing: an unweighted average; in phase 2 its id)'))


@dataclass
class ModelSettings:
    """``[model]``: the task, the grown model's shape and Dual-LiGO's intermediate shape."""

    family: str = setting("bert", choices=tuple(FAMILIES), help=(
        '"bert" (sequence classification), "vit" (image classification) or "llama" (a causal language model of '
        "[data]'s text: LlamaForCausalLM)"))
    num_labels: int = bounded(2, 2, help=(
        "a classifier's classes (transformers would build a regression head for 1; a language model has none)"))
    target: dict[str, Any] = setting(factory=dict, help=(
        "required: the grown model's shape, keyword arguments of the family's transformers config (BertConfig, "
        "ViTConfig, LlamaConfig: with its vocab_size, the tokenizer's at least, and num_key_value_heads), e.g. "
        "{num_hidden_layers = 8, hidden_size = 384, num_attention_heads = 12, intermediate_size = 1536}"))
    intermediate: dict[str, int] = setting(factory=dict, help=(
        "required: Dual-LiGO's common shape, which every party's source grows into first (the same keys)"))
    ligo: dict[str, Any] = setting(factory=dict, help="any other LiGOConfig fields, e.g. {init_noise_std = 0.0}")

    @property
    def grows_heads(self) -> bool:
        """Whether a party's grown model grows its task head from its source's trained one (``ligo``'s
        ``grow_heads``), so its sources are loaded as classifiers with their heads."""
        return bool(self.ligo.get("grow_heads"))


@dataclass
class DataSettings:
    """``[data]``: the data shared out among the parties, and the common split the comparison scores on."""

    source: str = setting("", help=(
        'required: a local file or folder, an MNIST IDX folder, "sklearn-digits" or a Hub dataset id ("name" or '
        '"name:config"); llama: running text (a text file, a folder, a table\'s text_column, a Hub dataset); a '
        "relative path is the config file's folder's (a preset's: the data folder's)"))
    split: str = setting("train", help="the split shared out among the parties")
    test_split: str = setting("test", help=(
        "the common split `fedgrow reproduce` scores every final model on (never shared out)"))
    test_limit: int = bounded(0, 0, help="> 0: score on a seeded random subset of that many test examples")
    limit: int | None = bounded(None, 1, help=(
        "keep a seeded random subset of this many examples of the split; absent: all of them"))
    eval_fraction: float = bounded(0.2, 0, 1, low_inclusive=False, high_inclusive=False, help=(
        "each party holds out this fraction of its share for evaluation"))
    dev_fraction: float = bounded(0.0, 0, 1, high_inclusive=False, help=(
        "a learning-rate search's setting (`fedgrow reproduce --tune` sets it on its own runs): this fraction of "
        "each party's training share becomes its development split, which nothing the party trains sees, its "
        "source included (0: none)"))
    partition: str = setting("iid", choices=PARTITIONS, help=(
        'how the split is shared out: "iid", or "dirichlet" (label skew; not for llama\'s unlabelled text)'))
    alpha: float = bounded(0.5, 0, low_inclusive=False, help=(
        '"dirichlet": the concentration (small: strongly non-IID)'))
    min_size: int = bounded(10, 1, help='"dirichlet": redraw until every party holds this many examples')
    min_class_size: int = bounded(0, 0, help=(
        '"dirichlet": ... and this many of every class (a one-class party has nothing to learn)'))
    text_column: str = setting("sentence", help="text: the column holding the text")
    label_column: str = setting("label", help="the column holding the labels")
    max_length: int = bounded(64, 1, help="text: tokens per example (llama: per block of the packed text)")
    tokenizer: str = setting("", help=(
        'text: a tokenizer\'s path or Hub id, or "minilm" (the bundled one); empty: the first party\'s source\'s'))
    image_size: int = bounded(32, 1, help="vision: pixels a side, images resized to it")
    num_channels: int = bounded(1, 1, help="vision: colour channels")
    source_cache: str = setting("~/.cache/fedgrow-hf/sources", help=(
        "where prepared sources (derived, distilled, pretrained) are kept, so a rerun reuses them"))


@dataclass
class PartySettings:
    """``[[parties]]``, one table per party: where its private source model comes from (exactly one of these)."""

    source: str = setting("", help='a model\'s path or Hub id; "minilm": the bundled all-MiniLM-L6-v2')
    derive: dict[str, Any] | None = setting(None, help=(
        "a smaller BERT cut out of `from` (default: minilm) by layer dropping and width pruning: "
        "{num_hidden_layers = 3, hidden_size = 192}, optionally intermediate_size and num_attention_heads; "
        "distill_steps = N then distils it from its parent on the party's own training sentences (cached)"))
    random: dict[str, Any] | None = setting(None, help=(
        "a randomly initialised model of this shape (tests): keyword arguments of the family's config"))
    pretrain: dict[str, Any] | None = setting(None, help=(
        "a model of this shape trained from scratch (cached): a BERT as a classifier on the party's own "
        "training share (the Fed-Grow authors' round 1; recipe: epochs, batch_size, learning_rate, weight_decay, "
        "max_grad_norm); a Llama as a causal language model of its text (the same recipe keys); a ViT for `steps` "
        'steps (default 100) on `data` (the train split of an image source, e.g. "sklearn-digits"; default: the '
        "party's own share)"))


@dataclass
class FederationConfig:
    """A whole Fed-Grow run: a config file's top-level settings, and its tables."""

    name: str = setting("fedgrow", help="the run's label: its folder (runs/NAME) and its reports")
    seed: int = bounded(0, 0, MAX_SEED, help=(
        "seeds initialisation (operators, task heads) and training (batch order)"))
    data_seed: int | None = bounded(None, 0, MAX_SEED, help=(
        "seeds the data (its subset, partition and held-out shares) and the parties' source preparation "
        "(derived, distilled, pretrained or random); absent: seed"))
    federation: FederationSettings = setting(factory=FederationSettings, help="[federation], below")
    model: ModelSettings = setting(factory=ModelSettings, help="[model], below; required")
    data: DataSettings = setting(factory=DataSettings, help="[data], below; required")
    training: dict[str, Any] = setting(factory=dict, help=(
        "keyword arguments of every party's transformers.TrainingArguments (learning_rate, "
        "per_device_train_batch_size ...): the operator phase's, each of its default's kind"))
    parties: list[PartySettings] = setting(factory=list, help="[[parties]], below: at least one")

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
        """Read a ``.toml`` or ``.json`` config, resolving relative paths against its folder; a
        ``[reproduce]`` table (``COMPARISON_TABLE``) is ``fedgrow reproduce``'s, not the federation's."""
        raw = read_config_file(path)
        raw.pop(COMPARISON_TABLE, None)
        config = cls.from_dict(raw)
        config.resolve_paths(Path(path).parent)
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

    @classmethod
    def read_back(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """A config saved by an earlier run (a kept result's, a run folder's ``config.json``) as this release
        reads it, to compare with :meth:`to_dict`: a setting added since has its default, which is what the run
        did. Raises :class:`ConfigError` where this release refuses it."""
        return cls.from_dict(raw).to_dict()

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
        _check_model_tables(self)
        if not model.target or not model.intermediate:
            raise ConfigError("model.target and model.intermediate (Dual-LiGO's common shape) are required")
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
        if fed.share_head and not self.family.classifies:
            raise ConfigError(f"federation.share_head averages a classifier's task head: a {model.family!r} "
                              "federation grows a language model, which has none")
        if fed.share_head and self.secure_aggregation.enabled:
            raise ConfigError("federation.share_head cannot be combined with secure aggregation: SecAgg+ masks and "
                              "checks the Global-LiGO only")
        if "grown_heads" in model.ligo:
            raise ConfigError("[model].ligo.grown_heads is what growth records; ask for it with grow_heads = true")
        if model.grows_heads and model.family != "bert":
            raise ConfigError(f"[model].ligo.grow_heads grows a BERT classifier's head from its source's; a "
                              f"{model.family!r} federation has no head it can grow")
        if model.grows_heads and fed.share_head:
            raise ConfigError("federation.share_head cannot be combined with [model].ligo.grow_heads: a grown head "
                              "is the operator's output, not a module of its own to average")
        _check_trimmed_mean(fed, self.num_parties)
        if self.secure_aggregation.enabled and fed.dp_noise_multiplier > 0:
            raise ConfigError(
                "federation.secure_aggregation cannot be combined with federation.dp_noise_multiplier > 0: "
                "Flower's server-side DP clips each update, which the server cannot see under SecAgg+"
            )
        _check_secure_aggregation_counts(self.secure_aggregation)
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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The tables of a ``.toml`` or ``.json`` config file as written: nothing checked, no path resolved."""
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
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a table of settings, got {type(raw).__name__}")
    return raw


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
            raise ConfigError(f"training.{key}={value!r} must be {type_name(kind)}")


def check_values(settings: Any, section: str = "") -> None:
    """Check every field of the dataclass ``settings`` against its annotation, its ``bounded`` range and its
    ``choices``.

    TOML and JSON give ints, floats, strings and booleans as written, and a wrong one would fail
    deep in a run, or silently (``1.5`` steps, ``"3"`` rounds): each must be of the declared type.
    """
    hints = get_type_hints(type(settings))
    for spec in fields(settings):
        name = f"{section}.{spec.name}" if section else spec.name
        value = getattr(settings, spec.name)
        if not _is_of_type(value, hints[spec.name]):
            raise ConfigError(f"{name}={value!r} must be {type_name(hints[spec.name])}")
        bounds = spec.metadata.get(RANGE)
        if bounds is not None and value is not None and value not in bounds:
            raise ConfigError(f"{name}={value!r} must be {bounds}")
        choices = spec.metadata.get(CHOICES)
        if choices and value not in choices:
            raise ConfigError(f"{name}={value!r} is not one of {choices}")


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
    if origin is tuple:  # tuple[X, ...] or tuple[X, Y]
        item_types = get_args(hint)
        if len(item_types) == 2 and item_types[1] is Ellipsis:
            item_types = (item_types[0],) * len(value) if isinstance(value, tuple) else ()
        return (isinstance(value, tuple) and len(value) == len(item_types)
                and all(_is_of_type(item, item_type) for item, item_type in zip(value, item_types)))
    return isinstance(value, hint)


def type_name(hint: Any) -> str:
    """How an error and docs/config.md name a type: ``an integer``, ``a finite number``, ``an integer or absent
    (null)`` ..."""
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
             type(None): "absent (null)"}
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(option) for option in get_args(hint))
    if origin is dict:
        value_type = get_args(hint)[1] if get_args(hint) else Any
        return "a table" + ("" if value_type is Any else f" (each value {type_name(value_type)})")
    if origin is list:
        return "a list" + (f" (each item {type_name(get_args(hint)[0])})" if get_args(hint) else "")
    if origin is tuple:
        item_types = get_args(hint)
        if len(item_types) == 2 and item_types[1] is Ellipsis:
            return f"a list (each item {type_name(item_types[0])})"
        return f"a list of {len(item_types)} values"
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
