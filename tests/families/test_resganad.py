"""ResGANAD architecture: presets, FLOPs budget, shapes, knob validation."""

from __future__ import annotations

import numpy as np
import pytest

from tfad.families.resganad.networks import PRESETS, ResGANADNetworks, preset
from tfad.networks.flops import count_flops

TINY = dict(
    image_size=32,
    stem_stride=2,
    stages=2,
    base_width=4,
    stem_filters=4,
    latent_dim=8,
    critic_base_width=4,
    critic_stages=2,
)


def test_thesis_preset_is_the_documented_architecture() -> None:
    arch = preset("thesis")
    assert arch.stages == 4 and arch.blocks_per_stage == 3 and arch.convs_per_block == 3
    assert arch.code_shape == (16, 16, 1024)  # at 256x256
    assert arch.latent_dim == 64


def test_line_cpu_fits_the_cycle_budget() -> None:
    # 2 cores * AVX2 FMA ~ 128 GFLOP/s; 60 patches in ~250 ms -> well under 0.5 GFLOP per patch (E1 + decoder)
    gflops = count_flops(ResGANADNetworks(preset("line-cpu")).build_inference_model()) / 1e9
    assert 0.05 < gflops < 0.5
    wide = count_flops(ResGANADNetworks(preset("line-cpu-wide")).build_inference_model()) / 1e9
    assert wide > 2 * gflops


def test_flops_of_a_single_conv_by_hand() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3, padding="same")(inputs))
    assert count_flops(model) == 2 * 8 * 8 * 3 * 3 * 3 * 5


@pytest.mark.parametrize("stem", ["conv", "space_to_depth"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(stem: str, channels: int) -> None:
    nets = ResGANADNetworks(preset("line-cpu", stem=stem, channels=channels, **TINY))
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, channels)).astype(np.float32)
    z = nets.encoder(x)
    assert z.shape == (2, 8)
    recon = nets.decoder(z)
    assert recon.shape == x.shape
    assert 0.0 <= float(np.min(recon)) and float(np.max(recon)) <= 1.0  # sigmoid output in [0, 1]
    features, logit = nets.critic(x)
    assert logit.shape == (2, 1) and features.shape[0] == 2
    assert nets.encoder2(recon).shape == (2, 8)
    assert nets.build_inference_model()(x).shape == x.shape


def test_bad_knobs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown ResGANAD preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown architecture field"):
        preset("line-cpu", widht=3)
    with pytest.raises(ValueError, match="divisible"):
        preset("line-cpu", image_size=100)
    with pytest.raises(ValueError, match="base_width"):
        preset("line-cpu", base_width=0)
    assert set(PRESETS) >= {"thesis", "line-cpu", "line-cpu-wide"}
