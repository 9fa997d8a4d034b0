"""A real deployment on 127.0.0.1: flower-superlink, two flower-supernodes, ``flwr run`` of the example app."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.federated.conftest import tiny_federation

pytest.importorskip("flwr")

pytestmark = [pytest.mark.slow, pytest.mark.network_port]

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "flower_app"


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
    except OSError as error:
        pytest.skip(f"cannot bind a TCP port on 127.0.0.1: {error}")
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def test_one_round_through_superlink_and_two_supernodes(shared_data_dir, tmp_path):
    for tool in ("flower-superlink", "flower-supernode", "flwr"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    config = tiny_federation(shared_data_dir, rounds=1, local_steps=2, phase2="none")
    config.parties = config.parties[:2]
    config.validate()
    config_path, run_dir = tmp_path / "federation.json", tmp_path / "run"
    config_path.write_text(config.to_json())

    link_port, *node_ports = _free_ports(3)
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local-deployment"\n\n[superlink.local-deployment]\n'
        f'address = "127.0.0.1:{link_port}"\ninsecure = true\n'
    )
    env = {**os.environ, "FLWR_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    processes = [_start(
        ["flower-superlink", "--insecure", "--port", str(link_port), "--disable-runtime-dependency-installation"],
        tmp_path / "superlink.log", env,
    )]
    try:
        time.sleep(3)
        for party, port in enumerate(node_ports):
            processes.append(_start(
                ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}", "--port", str(port),
                 "--node-config", f"partition-id={party} num-partitions=2"],
                tmp_path / f"supernode-{party}.log", env,
            ))
        submitted = subprocess.run(
            ["flwr", "run", str(APP), "local-deployment", "--run-config",
             f"config='{config_path}' run-dir='{run_dir}' federation.rounds=1 federation.local-steps=2 "
             "federation.phase2='none'"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
        deadline = time.monotonic() + 400
        while not (run_dir / "global_operator.safetensors").exists() and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), (tmp_path / "superlink.log").read_text()[-3000:]
            time.sleep(1)
        assert (run_dir / "global_operator.safetensors").exists(), (tmp_path / "superlink.log").read_text()[-3000:]
    finally:
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    (line,) = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert line["round"] == 1 and set(line["parties"]) == {"0", "1"} and line["dropped"] == []
    final = load_file(str(run_dir / "global_operator.safetensors"))
    from flwr.app import ArrayRecord

    from fedgrow_hf.federated.screening import payload_bytes

    assert all(p["bytes_up"] == payload_bytes(ArrayRecord(final)) for p in line["parties"].values())
