"""GRD-Net architecture: both bottlenecks, shapes, the CPU budget, knob validation."""

from __future__ import annotations

import numpy as np
import pytest

from tfad.families.grdnet.networks import GRDNetNetworks, preset
from tfad.networks.flops import count_flops

TINY = dict(
    image_size=32,
    stem_stride=2,
    stages=2,
    base_width=4,
    stem_filters=4,
    code_channels=4,
    dense_dim=16,
    unet_stem_stride=2,
    unet_base_width=4,
    unet_depth=3,
    critic_base_width=4,
    critic_stages=2,
)


def test_bottlenecks_are_the_thesis_ones() -> None:
    assert preset("crae").code_shape == (8, 8, 32)  # "CRAE": convolutional 32x8x8 at 256x256
    assert preset("thesis-crae").code_shape == (8, 8, 32)
    assert preset("drae").code_shape == (2048,)  # "DRAE": dense 2048
    assert preset("thesis-drae").code_shape == (2048,)


def test_cpu_presets_fit_two_machine_cycles() -> None:
    # GRD-Net is the two-cycle (1 s) model: 60 patches at ~30-40 GFLOP/s achieved -> < 0.6 GFLOP/patch
    for name in ("crae", "drae"):
        gflops = count_flops(GRDNetNetworks(preset(name)).build_inference_model()) / 1e9
        assert 0.1 < gflops < 0.6, (name, gflops)


@pytest.mark.parametrize("bottleneck", ["conv", "dense"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(bottleneck: str, channels: int) -> None:
    nets = GRDNetNetworks(preset("crae", bottleneck=bottleneck, channels=channels, **TINY))
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, channels)).astype(np.float32)
    z = nets.encoder(x)
    assert z.shape == ((2, 4, 4, 4) if bottleneck == "conv" else (2, 16))
    recon = nets.decoder(z)
    assert recon.shape == x.shape
    assert nets.encoder2(recon).shape == z.shape
    features, logit = nets.critic(x)
    assert logit.shape == (2, 1) and features.shape[0] == 2
    out = nets.build_inference_model()(x)
    assert out["reconstruction"].shape == x.shape
    a = np.asarray(out["anomaly_map"])
    assert a.shape == (2, 32, 32, 1) and a.min() >= 0.0 and a.max() <= 1.0  # sigmoid map at full size
    assert set(nets.inference_parts()) == {"encoder", "decoder", "unet"}


def test_bad_knobs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown GRD-Net preset"):
        preset("line-cpu")
    with pytest.raises(ValueError, match="bottleneck"):
        preset("crae", bottleneck="sparse")
    with pytest.raises(ValueError, match="unet_stem_stride"):
        preset("crae", image_size=96, unet_depth=5)
    with pytest.raises(ValueError, match="unknown architecture field"):
        preset("crae", latent_dim=3)
