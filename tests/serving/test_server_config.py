"""The Python server refuses what the C++ server refuses (cc/server_flags.cc), before loading a model."""

from __future__ import annotations

import os

import pytest

from tfad.serving.contract import RequestLimits
from tfad.serving.server import (
    LIMIT_RANGES,
    SETTING_RANGES,
    ServerConfig,
    ServerConfigError,
    check_server_config,
    start_server,
    tensorflow_default_inter_op_threads,
)


def test_the_defaults_pass_on_two_inter_op_threads() -> None:
    check_server_config(ServerConfig(), inter_op_threads=2)
    check_server_config(ServerConfig(inference_threads=2), inter_op_threads=2)


@pytest.mark.parametrize("name", sorted(SETTING_RANGES))
def test_each_setting_out_of_range_is_refused_by_name(name: str) -> None:
    low, high = SETTING_RANGES[name]
    for value in (low - 1, high + 1):
        with pytest.raises(ServerConfigError, match=f"--{name.replace('_', '-')}: {value} is out of range"):
            check_server_config(ServerConfig(**{name: value}), inter_op_threads=128)
    check_server_config(ServerConfig(**{name: high if name == "inference_threads" else low}), 128)


@pytest.mark.parametrize("name", sorted(LIMIT_RANGES))
def test_each_request_limit_out_of_range_is_refused_by_name(name: str) -> None:
    low, _ = LIMIT_RANGES[name]
    config = ServerConfig(limits=RequestLimits(**{name: low - 1}))
    with pytest.raises(ServerConfigError, match=f"--{name.replace('_', '-')}: {low - 1} is out of range"):
        check_server_config(config, inter_op_threads=2)


def test_a_setting_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ServerConfigError, match="--max-queue: '8' is out of range"):
        check_server_config(ServerConfig(max_queue="8"), inter_op_threads=2)


def test_more_inference_threads_than_inter_op_threads_is_refused() -> None:
    with pytest.raises(
        ServerConfigError, match=r"--inference-threads=3 is more than the 2 inter-op threads"
    ) as err:
        check_server_config(ServerConfig(inference_threads=3), inter_op_threads=2)
    assert "TF_NUM_INTEROP_THREADS=3" in str(err.value)
    check_server_config(ServerConfig(inference_threads=3), inter_op_threads=3)


def test_tensorflow_default_pool_follows_the_environment_then_the_affinity(monkeypatch) -> None:
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "5")
    assert tensorflow_default_inter_op_threads() == 5
    for unset in ("0", "not-a-number"):
        monkeypatch.setenv("TF_NUM_INTEROP_THREADS", unset)
        assert tensorflow_default_inter_op_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS")
    assert tensorflow_default_inter_op_threads() == len(os.sched_getaffinity(0))


def test_start_server_refuses_before_loading_anything(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    missing = tmp_path / "no-such-models"
    with pytest.raises(ServerConfigError, match="--inference-threads=2"):
        start_server(ServerConfig(models_root=str(missing), listen="127.0.0.1:0", inference_threads=2))


def test_tfad_serve_prints_the_error_and_exits_2(tmp_path, monkeypatch, capsys) -> None:
    from tfad.cli import main

    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "2")
    argv = ["serve", "--models-root", str(tmp_path), "--listen", "127.0.0.1:0"]
    assert main([*argv, "--inference-threads", "0"]) == 2
    assert "tfad serve: error: --inference-threads: 0 is out of range [1, 64]" in capsys.readouterr().err
    assert main([*argv, "--inference-threads", "4"]) == 2
    assert "--inference-threads=4 is more than the 2 inter-op threads" in capsys.readouterr().err
