"""Supervised classifier networks: presets, shapes, ResNet18's structure and cost, pretrained weights from
local files (grey replication), knob validation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfad.families.classifier.networks import (
    BACKBONES,
    PRESETS,
    ClassifierArchitecture,
    ClassifierNetworks,
    build_backbone,
    build_resnet18,
    preset,
)
from tfad.networks.flops import count_flops

# Keras reading .weights.h5 files with this numpy warns once per variable
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FEATURE_CHANNELS = {
    "resnet18": 512,
    "resnet18-small": 128,
    "mobilenetv3-small": 576,
    "mobilenetv3-large": 960,
    "resnet50v2": 2048,
}
# inference GFLOP per 256x256x1 patch as documented in tfad/families/classifier/networks.py (from scratch)
DOCUMENTED_GFLOPS = {
    "resnet18": 4.53,
    "resnet18-small": 0.30,
    "mobilenetv3-small": 0.134,
    "mobilenetv3-large": 0.549,
    "resnet50v2": 8.89,
}


def _weights_equal(a: keras.Model, b: keras.Model) -> bool:
    wa, wb = [v.numpy() for v in a.weights], [v.numpy() for v in b.weights]
    return len(wa) == len(wb) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb, strict=True)
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_with_the_right_shapes(name: str) -> None:
    assert set(PRESETS) == {"resnet18", "resnet18-small", *BACKBONES}
    k = FEATURE_CHANNELS[name]
    # grey at the production size: shapes, and the documented cost
    nets = ClassifierNetworks(preset(name, num_classes=3))
    model = nets.build_inference_model()
    gflops = count_flops(model) / 1e9
    assert gflops == pytest.approx(DOCUMENTED_GFLOPS[name], rel=0.01), gflops
    x = np.random.default_rng(0).uniform(0, 1, (1, 256, 256, 1)).astype(np.float32)
    out = model(x)
    assert out["features"].shape == (1, 8, 8, k) and out["logits"].shape == (1, 3)
    assert nets.feature_shape == (8, 8, k) and not nets.replicates_grey
    norms = [layer for layer in nets.backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)  # the package's BN momentum
    np.testing.assert_allclose(
        nets.head(nets.backbone(x)).numpy(), out["logits"].numpy(), rtol=1e-4, atol=1e-5
    )
    counts = nets.parameter_counts()
    assert counts["head"] == k * 3 + 3  # GAP -> Dropout -> Dense(3)
    assert counts["inference"] == counts["backbone"] + counts["head"] == model.count_params()
    assert len(nets.trainable_variables) == len(nets.backbone.trainable_variables) + 2
    assert set(nets.checkpoint_parts()) == set(nets.inference_parts()) == {"backbone", "head"}
    assert model.get_layer("backbone") is nets.backbone and model.get_layer("head") is nets.head
    # colour at a small size
    nets3 = ClassifierNetworks(preset(name, image_size=64, channels=3))
    out3 = nets3.build_inference_model()(np.zeros((2, 64, 64, 3), np.float32))
    assert out3["features"].shape == (2, 2, 2, k) and out3["logits"].shape == (2, 2)
    assert nets3.parameter_counts()["backbone"] > counts["backbone"]  # 3-channel stem


def test_resnet18_is_he_et_al() -> None:
    model = build_resnet18(224, 3, 64)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 20  # stem + 4 stages x 2 basic blocks x 2 convs + 3 projection shortcuts
    assert sorted(c.kernel_size[0] for c in convs) == [1] * 3 + [3] * 16 + [7]
    assert [c.name for c in convs if c.kernel_size == (1, 1)] == [
        "layer2_block0_proj",
        "layer3_block0_proj",
        "layer4_block0_proj",
    ]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 20
    assert model.get_layer("conv1").strides == (2, 2) and model.get_layer("pool1").pool_size == (3, 3)
    for stage, (side, width) in enumerate([(56, 64), (28, 128), (14, 256), (7, 512)], start=1):
        assert model.get_layer(f"layer{stage}_block1_out").output.shape == (None, side, side, width)
    assert model.output.shape == (None, 7, 7, 512)
    assert model.layers[-1].name == "layer4_block1_out" and isinstance(model.layers[-1], keras.layers.ReLU)
    # torchvision's resnet18 without fc: 11,689,512 - (512 * 1000 + 1000) trainable parameters
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 11_176_512
    # the well-known ~1.8 G multiply-adds (3.6 GFLOP) at 224x224x3
    assert count_flops(model) == pytest.approx(3.63e9, rel=0.05)
    narrow = build_resnet18(64, 1, 16)
    assert narrow.output.shape == (None, 2, 2, 128)
    assert narrow.get_layer("conv1").kernel.shape == (7, 7, 1, 16)


def test_flops_of_a_depthwise_conv_by_hand() -> None:
    inputs = keras.Input((8, 8, 4))
    same = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inputs)
    strided = keras.layers.DepthwiseConv2D(5, strides=2, padding="same")(same)
    assert count_flops(keras.Model(inputs, same)) == 2 * 8 * 8 * 3 * 3 * 4 * 2
    assert count_flops(keras.Model(inputs, strided)) == 2 * 8 * 8 * 3 * 3 * 4 * 2 + 2 * 4 * 4 * 5 * 5 * 8


def test_resnet18_weights_from_a_local_file(tmp_path) -> None:
    grey = preset("resnet18-small", image_size=64)
    source = ClassifierNetworks(grey)
    path = tmp_path / "grey.weights.h5"
    source.backbone.save_weights(path)
    loaded = ClassifierNetworks(grey, backbone_weights=str(path))
    assert _weights_equal(loaded.backbone, source.backbone) and not loaded.replicates_grey
    assert not _weights_equal(ClassifierNetworks(grey).backbone, source.backbone)  # not by chance

    # a 3-channel (ImageNet-style) resnet18 file into a grey backbone: the grey channel is replicated
    colour = build_resnet18(64, 3, 16)
    colour_path = tmp_path / "rgb.weights.h5"
    colour.save_weights(colour_path)
    replicated = ClassifierNetworks(grey, backbone_weights=colour_path)
    assert replicated.replicates_grey
    assert _weights_equal(replicated.backbone, colour)
    x = np.random.default_rng(1).uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(
        replicated.backbone(x).numpy(), colour(np.repeat(x, 3, axis=-1)).numpy(), rtol=1e-5, atol=1e-5
    )
    # the same structure without the file (to restore a checkpoint of it), and its file round trip
    rebuilt = ClassifierNetworks(grey, replicate_grey=True)
    assert rebuilt.replicates_grey and rebuilt.backbone.get_layer("conv1").kernel.shape == (7, 7, 3, 16)
    replicated_path = tmp_path / "replicated.weights.h5"
    replicated.backbone.save_weights(replicated_path)
    again = ClassifierNetworks(grey, backbone_weights=replicated_path)
    assert again.replicates_grey and _weights_equal(again.backbone, colour)


def test_application_weights_from_a_local_file(tmp_path) -> None:
    # the application's own file (keras.applications.MobileNetV3Small(...) as downloaded, no tfad layers)
    application = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 3), include_top=False, weights=None
    )
    app_path = tmp_path / "application.weights.h5"
    application.save_weights(app_path)
    arch = preset("mobilenetv3-small", image_size=64, channels=3)
    from_app = ClassifierNetworks(arch, backbone_weights=app_path)
    assert _weights_equal(from_app.backbone, application) and not from_app.replicates_grey
    x = np.random.default_rng(2).uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    x3 = np.repeat(x, 3, axis=-1)
    # our backbone takes [0, 1]; the application takes [0, 255] (include_preprocessing)
    np.testing.assert_allclose(from_app.backbone(x3).numpy(), application(x3 * 255.0).numpy(), atol=1e-4)

    # a backbone built here, saved and reloaded through the path route; grey input with these 3-channel
    # pretrained weights: the grey channel is replicated inside the model
    path = tmp_path / "backbone.weights.h5"
    from_app.backbone.save_weights(path)
    grey = ClassifierNetworks(preset("mobilenetv3-small", image_size=64), backbone_weights=str(path))
    assert grey.replicates_grey and _weights_equal(grey.backbone, application)
    np.testing.assert_allclose(grey.backbone(x).numpy(), application(x3 * 255.0).numpy(), atol=1e-4)
    assert grey.build_inference_model()(x)["logits"].shape == (2, 2)


def test_weights_that_are_missing_or_do_not_fit(tmp_path) -> None:
    arch = preset("resnet18-small", image_size=64)
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        ClassifierNetworks(arch, backbone_weights=missing)
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        build_backbone(preset("mobilenetv3-small", image_size=64), tmp_path / "nowhere.h5")

    wider = tmp_path / "wider.weights.h5"
    build_resnet18(64, 3, 32).save_weights(wider)
    with pytest.raises(ValueError, match=r"wider\.weights\.h5 does not fit the resnet18 backbone"):
        ClassifierNetworks(arch, backbone_weights=wider)
    head_only = tmp_path / "head.weights.h5"
    ClassifierNetworks(arch).head.save_weights(head_only)
    with pytest.raises(ValueError, match=r"head\.weights\.h5 does not fit"):
        ClassifierNetworks(arch, backbone_weights=head_only)
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_text("not an HDF5 file")
    with pytest.raises(ValueError, match=r"garbage\.weights\.h5 does not fit"):
        ClassifierNetworks(arch, backbone_weights=garbage)
    with pytest.raises(ValueError, match="no ResNet18 download"):
        ClassifierNetworks(arch, backbone_weights="imagenet")
    with pytest.raises(ValueError, match="replicate_grey"):
        ClassifierNetworks(preset("resnet18-small", image_size=64, channels=3), replicate_grey=True)


def test_bad_knobs_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown classifier preset 'resnet34'.*'mobilenetv3-large'"):
        preset("resnet34")
    with pytest.raises(ValueError, match="unknown architecture field"):
        preset("resnet18", widht=3)
    for knob, value in [
        ("backbone", "vgg16"),
        ("image_size", 100),
        ("image_size", 0),
        ("image_size", 16),
        ("channels", 2),
        ("num_classes", 1),
        ("base_width", 0),
        ("alpha", 0.0),
        ("alpha", "wide"),
        ("dropout", 1.0),
        ("dropout", -0.1),
    ]:
        with pytest.raises(ValueError, match=f"model.{knob}"):
            preset("resnet18", **{knob: value})
    with pytest.raises(ValueError, match="model.num_classes"):
        ClassifierNetworks(ClassifierArchitecture(num_classes=1))
    arch = preset("mobilenetv3-large", alpha=0.75, num_classes=4)
    assert ClassifierArchitecture(**arch.to_dict()) == arch
    assert PRESETS["resnet18"].base_width == 64 and PRESETS["resnet18-small"].base_width == 16
