"""FedGrowTrainer: a plain transformers Trainer whose rounds exchange only the Global-LiGO."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from fedgrow_hf.federated import FedGrowTrainer
from fedgrow_hf.federated.trainer import OPTIMIZER_STATE


def _args(tmp_path, steps: int = 3) -> TrainingArguments:
    # written as users write them with transformers 5
    return TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8, learning_rate=5e-3,
        eval_strategy="no", save_strategy="no", report_to=[], use_cpu=True, seed=0, logging_steps=1,
        lr_scheduler_type="linear",
    )


def _trainer(model, tmp_path, dataset, steps: int = 3, **kwargs) -> FedGrowTrainer:
    return FedGrowTrainer(model, _args(tmp_path, steps), party_dir=tmp_path / "party", train_dataset=dataset,
                          schedule_steps=12, **kwargs)


def test_round_trains_locally_and_exchanges_only_global_state(make_party, sst2_train, minilm_path, tmp_path):
    from transformers import AutoTokenizer

    model = make_party()
    trainer = _trainer(model, tmp_path, sst2_train, processing_class=AutoTokenizer.from_pretrained(minilm_path))
    before_global, before_local = trainer.get_global_state(), model.local_state_dict()
    metrics = trainer.train_round(server_round=1)
    after_global = trainer.get_global_state()
    assert metrics["num_examples"] == 3 * 8 and metrics["train_loss"] > 0
    assert set(after_global) == set(model.base_model.operator.global_stage.state_dict())
    assert any(not torch.equal(before_global[k], after_global[k]) for k in after_global)
    assert any(not torch.equal(before_local[k], v) for k, v in model.local_state_dict().items())
    # private state is on disk, global state is not part of it
    private = trainer.private_state_dict()
    assert private and not any("global_stage" in k for k in private)
    assert any("classifier" in k for k in private) and any("local_stages" in k for k in private)
    assert (trainer.round_dir(1) / OPTIMIZER_STATE).exists()


def test_set_global_state_is_validated(make_party, sst2_train, tmp_path):
    from fedgrow_hf import GlobalStateError

    trainer = _trainer(make_party(), tmp_path, sst2_train)
    state = trainer.get_global_state()
    key = next(iter(state))
    bad = {**state, key: torch.full_like(state[key], float("nan"))}
    with pytest.raises(GlobalStateError, match=key):
        trainer.set_global_state(bad)
    assert torch.equal(trainer.get_global_state()[key], state[key])


def test_private_state_of_another_shape_is_refused_before_any_parameter_changes(make_party, sst2_train, tmp_path):
    """A (1, n) tensor would broadcast into an (m, n) parameter: saved private state must match exactly."""
    from safetensors.torch import load_file, save_file

    from fedgrow_hf.federated.trainer import PRIVATE_WEIGHTS

    trainer = _trainer(make_party(), tmp_path, sst2_train)
    trainer.save_private_state(0)
    path = trainer.round_dir(0) / PRIVATE_WEIGHTS
    state = load_file(str(path))
    name = next(key for key, value in state.items() if value.dim() == 2 and value.shape[0] > 1)
    state[name] = state[name][:1].clone() + 1.0
    save_file(state, str(path))
    before = {key: value.clone() for key, value in trainer.private_state_dict().items()}
    with pytest.raises(ValueError, match=rf"{name} has shape \(1, \d+\), expected \(\d+, \d+\)"):
        trainer.load_private_state(0)
    assert all(torch.equal(value, before[key]) for key, value in trainer.private_state_dict().items())


@pytest.mark.slow
def test_restarted_party_resumes_exactly(make_party, sst2_train, tmp_path):
    """Round 2 in a fresh process (new model + trainer from disk) == round 2 in the same trainer."""
    model = make_party()
    trainer = _trainer(model, tmp_path, sst2_train, steps=2)
    trainer.train_round(server_round=1)
    server_state = trainer.get_global_state()
    trainer.train_round(server_state, server_round=2)
    continued = trainer.get_global_state()
    lr_continued = trainer.lr_scheduler.get_last_lr()

    restarted = _trainer(make_party(), tmp_path, sst2_train, steps=2)  # same party_dir, fresh model
    assert restarted.latest_round() == 2
    restarted.train_round(server_state, server_round=2)  # the round is run again from round-1 state
    for key, value in restarted.get_global_state().items():
        torch.testing.assert_close(value, continued[key])
    assert restarted.lr_scheduler.get_last_lr() == pytest.approx(lr_continued)
    assert lr_continued[0] == pytest.approx(5e-3 * (12 - 2 * 2) / 12)  # one schedule across rounds


def test_rejects_plain_ligo(tmp_path, sst2_train):
    from transformers import BertForSequenceClassification, BertModel

    from fedgrow_hf import grow
    from tests.federated.conftest import tiny_bert

    plain = grow(BertModel(tiny_bert(1, 16, 2, 32)), tiny_bert(2, 32, 4, 64), model_class=BertForSequenceClassification)
    with pytest.raises(TypeError, match="Dual-LiGO"):
        _trainer(plain, tmp_path, sst2_train)


def _vision_config(shared_data_dir, tmp_path):
    from fedgrow_hf.experiment.config import FederationConfig

    config = FederationConfig.load(Path(__file__).resolve().parents[2] / "examples" / "configs" / "demo-vision.toml")
    config.data.source, config.data.limit = str(shared_data_dir / "mnist"), 240
    config.data.source_cache = str(tmp_path / "sources")
    config.model.target = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                           "intermediate_size": 64, "patch_size": 4}
    config.model.intermediate = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
                                 "intermediate_size": 32}
    for party in config.parties:
        party.pretrain = {"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2,
                          "intermediate_size": 16, "steps": 2}
    config.validate()
    return config


def test_server_reference_is_every_partys_initial_global_state(shared_data_dir, tmp_path):
    """The server builds the initial Global-LiGO without sources; it must be what parties start from."""
    from fedgrow_hf.experiment.parties import build_party_model, reference_global_stage
    from tests.federated.conftest import tiny_federation

    for config in (tiny_federation(shared_data_dir), _vision_config(shared_data_dir, tmp_path)):
        reference = reference_global_stage(config).state_dict()
        for party in range(config.num_parties):
            state = build_party_model(config, party).global_state_dict()
            assert set(state) == set(reference)
            assert all(torch.equal(state[k], reference[k]) for k in state), (config.name, party)


def test_vision_party_from_config_trains_a_round(shared_data_dir, tmp_path):
    """A ViT party (tiny ViT source pretrained on its own MNIST share) through the config's helpers."""
    from fedgrow_hf.experiment.data import party_datasets
    from fedgrow_hf.experiment.parties import build_party_model
    from fedgrow_hf.experiment.training import training_arguments

    config = _vision_config(shared_data_dir, tmp_path)
    model = build_party_model(config, 1)
    train, evaluation = party_datasets(config, 1)
    assert tuple(train[0]["pixel_values"].shape) == (1, 16, 16)
    trainer = FedGrowTrainer(model, training_arguments(config, tmp_path / "args", 3), party_dir=tmp_path / "party",
                             train_dataset=train, eval_dataset=evaluation)
    before = trainer.get_global_state()
    metrics = trainer.train_round(before, server_round=1)
    assert metrics["train_loss"] > 0 and any(not torch.equal(before[k], v) for k, v in trainer.get_global_state().items())
    assert trainer.evaluate()["eval_loss"] > 0


def test_derived_party_source_is_distilled_on_its_own_sentences_and_cached(shared_data_dir, minilm_path, tmp_path):
    """``derive = {..., distill_steps}``: cut out of MiniLM, then distilled on the party's own train share."""
    from fedgrow_hf.experiment.parties import load_source
    from fedgrow_hf.sources import derive_bert_source
    from tests.federated.conftest import tiny_federation

    config = tiny_federation(shared_data_dir)
    config.data.source_cache = str(tmp_path / "sources")
    shape = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64}
    config.parties[1].random = None
    config.parties[1].derive = {**shape, "distill_steps": 2}
    config.validate()
    source = load_source(config, 1)
    plain = derive_bert_source(str(minilm_path), **shape)
    assert source.config.fedgrow_derivation == plain.config.fedgrow_derivation
    assert any(not torch.equal(a, b) for a, b in zip(source.state_dict().values(), plain.state_dict().values()))
    (entry,) = (tmp_path / "sources").iterdir()
    recipe = (entry / "fedgrow_recipe.json").read_text()
    assert '"steps": 2' in recipe and f'"seed": {config.seed + 1}' in recipe
    again = load_source(config, 1)  # the next round: reloaded from the cache, identical
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), again.state_dict().values()))
    assert len(list((tmp_path / "sources").iterdir())) == 1


def test_phase2_has_its_own_learning_rate(shared_data_dir, tmp_path):
    """``finetune_learning_rate`` sets phase 2's (full-model) rate; 0 keeps ``[training]``'s."""
    from fedgrow_hf.experiment.training import finetune_arguments, training_arguments
    from tests.federated.conftest import tiny_federation

    config = tiny_federation(shared_data_dir)
    operator = training_arguments(config, tmp_path / "a", 3)
    assert finetune_arguments(config, tmp_path / "b").learning_rate == operator.learning_rate == 1e-2
    config.federation.finetune_learning_rate = 1e-4
    phase2 = finetune_arguments(config, tmp_path / "c")
    assert (phase2.learning_rate, phase2.max_steps) == (1e-4, config.federation.finetune_steps)
    assert training_arguments(config, tmp_path / "d", 3).learning_rate == 1e-2
