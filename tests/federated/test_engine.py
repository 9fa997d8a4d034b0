"""How ``simulate`` runs parties: the engine and Ray's CPU/GPU share per party, checked before anything starts."""

from __future__ import annotations

import pytest
import torch

from fedgrow_hf.federated.engine import SimulationEngine, as_engine
from fedgrow_hf.federated.simulate import simulate
from tests.federated.conftest import tiny_federation


def test_ray_gets_each_partys_cpu_and_gpu_share():
    assert SimulationEngine().ray_backend_config() == {"client_resources": {"num_cpus": 1.0, "num_gpus": 0.0}}
    if torch.cuda.is_available():
        config = SimulationEngine("ray", cpus_per_party=2, gpus_per_party=0.5).ray_backend_config()
        assert config == {"client_resources": {"num_cpus": 2, "num_gpus": 0.5}}
    assert as_engine("inprocess") == SimulationEngine("inprocess")
    assert SimulationEngine("ray", 2, 0.5).cli_words() == ["--cpus-per-party", "2", "--gpus-per-party", "0.5"]
    assert SimulationEngine("inprocess").cli_words() == ["--engine", "inprocess"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "threads"}, "unknown engine 'threads'"),
        ({"cpus_per_party": 0}, "cpus_per_party must be a positive number"),
        ({"cpus_per_party": float("nan")}, "cpus_per_party must be a positive number"),
        ({"gpus_per_party": -1}, "gpus_per_party must be >= 0"),
        ({"name": "inprocess", "gpus_per_party": 1}, "Ray's shares; the 'inprocess' engine"),
    ],
)
def test_bad_engine_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulationEngine(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_gpus_for_parties_on_a_machine_without_cuda_are_refused_before_ray_starts(shared_data_dir, tmp_path):
    with pytest.raises(ValueError, match="gpus_per_party=0.5 but this machine has no CUDA device"):
        simulate(tiny_federation(shared_data_dir), tmp_path, engine=SimulationEngine("ray", gpus_per_party=0.5))
    assert not (tmp_path / "metrics.jsonl").exists()
