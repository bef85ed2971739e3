"""Configuration: methods.md defaults, strict keys, clear errors."""

from __future__ import annotations

import math

import pytest

from tfad.config import Config, ConfigError, dump_config, from_dict, load_config


def test_defaults_are_the_documented_hyperparameters() -> None:
    c = from_dict({})  # validated: the family defaults are filled in
    assert c.training.learning_rate == 1.5e-4 and c.training.batch_size == 32
    assert math.isclose(c.training.restart_factor, 1 / 3)
    w = c.training.loss_weights
    assert (w.adversarial, w.contextual, w.latent, w.noise) == (1.0, 50.0, 1.0, 3.0)  # Eq. 8.13
    assert (w.huber, w.ssim) == (2.0, 1.0)
    assert c.synthesis.probability == 0.75 and (c.synthesis.beta_min, c.synthesis.beta_max) == (0.5, 1.0)
    assert math.isclose(c.augment.max_rotation, math.pi / 8) and c.augment.vertical_flip
    assert (c.calibration.run_k, c.calibration.run_n) == (7, 10)
    assert c.model.family == "resganad" and c.model.preset == "line-cpu"
    assert Config().training.learning_rate is None  # unvalidated: "the family's default"


def test_grdnet_defaults_are_the_thesis_ones() -> None:
    c = from_dict({"model": {"family": "grdnet"}})
    assert c.model.preset == "crae" and c.training.learning_rate == 1e-4  # Adam 1e-4
    g = c.grdnet
    assert (g.adversarial, g.contextual, g.latent, g.l1, g.ssim) == (1.0, 50.0, 1.0, 1.0, 1.0)  # Eq. 8.4-8.6
    assert g.roi_loss == "focal-intersection"  # Table 9.3 case 2
    assert math.isclose(g.plateau_factor, math.exp(-0.1)) and g.plateau_patience_epochs == 3  # Eq. 9.1
    assert g.score_filter_size == 21
    with pytest.raises(ConfigError, match="grdnet.roi_loss"):
        from_dict({"model": {"family": "grdnet"}, "grdnet": {"roi_loss": "case5"}})
    with pytest.raises(ConfigError, match="unknown GRD-Net preset 'line-cpu'"):
        from_dict({"model": {"family": "grdnet", "preset": "line-cpu"}})
    with pytest.raises(ConfigError, match="score_filter_size"):
        from_dict({"grdnet": {"score_filter_size": 20}})


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'training.learning_rte'.*did you mean 'learning_rate'"
    ):
        from_dict({"training": {"learning_rte": 1e-3}})
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        from_dict({"modle": {}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"training": {"batch_size": "32"}}, "training.batch_size: expected an integer"),
        ({"training": {"batch_size": 0}}, "training.batch_size must be >= 1"),
        ({"synthesis": {"probability": 1.2}}, "synthesis.probability"),
        ({"data": {"channels": 2}}, "data.channels"),
        ({"data": {"on_corrupt": "ignore"}}, "data.on_corrupt"),
        ({"model": {"preset": "giant"}}, "unknown ResGANAD preset"),
        ({"model": {"overrides": {"widening": -1}}}, "widening"),
        ({"model": {"overrides": {"widht": 2}}}, "unknown architecture field"),
        ({"data": {"image_size": 100}}, "divisible"),
        ({"calibration": {"policy": "false-reject-budget"}}, "false_reject_budget"),
        ({"calibration": {"run_k": 11}}, "run_k"),
        ({"training": {"loss_weights": {"noise": "high"}}}, "training.loss_weights.noise"),
        ({"name": "my model!"}, "name"),
    ],
)
def test_invalid_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_yaml_round_trip_and_file_errors(tmp_path) -> None:
    config = from_dict({"name": "a", "training": {"epochs": 3}, "model": {"overrides": {"widening": 2}}})
    dump_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    (tmp_path / "bad.yaml").write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["classifier", "segmentation", "blob"])
def test_packaged_example_configs_are_valid(name: str) -> None:
    from importlib import resources

    import yaml

    data = yaml.safe_load(resources.files("tfad.configs").joinpath(f"{name}.yaml").read_text())
    config = from_dict(data)
    assert config.model.family == name
    assert config.training.adam_beta_1 == (0.5 if name == "blob" else 0.9)  # the family defaults


def test_packaged_demo_config_is_valid() -> None:
    from importlib import resources

    import yaml

    data = yaml.safe_load(resources.files("tfad.configs").joinpath("demo.yaml").read_text())
    config = from_dict({**data, "data": {**data["data"], "root": "/tmp/x"}})
    assert config.model.preset == "line-cpu"
