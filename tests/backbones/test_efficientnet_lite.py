"""The torch-free legacy .pth reader (against its own writer and the package file), EfficientNet-Lite0's
known answers on scikit-image samples, the feature extractor's shapes, grey input and cost, and the cached
weight conversion."""

from __future__ import annotations

import pickle
import pickletools
import struct
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import skimage.data

from tfad.backbones import (
    STRIDE_TAPS,
    build_classifier,
    build_feature_extractor,
    converted_weights,
    flops_per_image,
    folded_features,
    package_weights_file,
    read_legacy_state_dict,
    write_legacy_state_dict,
)
from tfad.backbones.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION
from tfad.networks.flops import count_flops

# Keras reading .weights.h5 files with this numpy warns once per variable
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ------------------------------------------------------------------------------------------------ reader


def _storage_keys(path: Path) -> list[str]:
    """The storage key list of a legacy file: the pickle after the state dict (skipped unexecuted)."""
    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)  # magic number, protocol, sys info: plain values
        for _ in pickletools.genops(f):  # walks the state-dict pickle to its STOP without running it
            pass
        return pickle.load(f)


def _header() -> bytes:
    return b"".join(
        pickle.dumps(v, protocol=2)
        for v in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True})
    )


@pytest.fixture
def small_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 6)).astype(np.float32)
    return {
        "conv.weight": rng.standard_normal((5, 3, 3, 3)).astype(np.float32),
        "bn.running_var": rng.random(7).astype(np.float32),
        "scalar": np.asarray(np.float32(2.5)),
        "empty": np.zeros((0, 3), np.float32),
        "bn.num_batches_tracked": np.asarray(12345678901, np.int64),
        "mask": np.array([True, False, True]),
        "double": rng.standard_normal((2, 3)),
        "base": base,
        "base_t": base.T,  # the same storage, transposed strides
        "base_slice": base[1:3, 1::2],  # the same storage, an offset and strides
        "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
    }


def test_reader_returns_what_the_writer_wrote(tmp_path: Path, small_state: dict[str, np.ndarray]) -> None:
    path = tmp_path / "small.pth"
    write_legacy_state_dict(path, small_state)
    loaded = read_legacy_state_dict(path)
    assert list(loaded) == list(small_state)
    for name, expected in small_state.items():
        assert loaded[name].dtype == expected.dtype, name
        assert loaded[name].shape == expected.shape, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
        assert loaded[name].flags.c_contiguous and loaded[name].flags.writeable, name
    # the three views of ``base`` were written as one storage, so offset and strides were really used
    assert len(_storage_keys(path)) == len(small_state) - 2


@pytest.mark.parametrize("cut", [0, 10, 200, -5, -100])
def test_truncated_file_names_itself(tmp_path: Path, small_state: dict[str, np.ndarray], cut: int) -> None:
    path = tmp_path / "cut.pth"
    write_legacy_state_dict(path, small_state)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[: len(data) + cut])
    with pytest.raises(ValueError, match="cut.pth"):
        read_legacy_state_dict(path)


def test_non_legacy_files_are_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "new_style.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="new_style.pth.*zip"):
        read_legacy_state_dict(zipped)
    wrong_magic = tmp_path / "magic.pth"
    wrong_magic.write_bytes(pickle.dumps(1234, protocol=2) + _header())
    with pytest.raises(ValueError, match="magic.pth.*magic number"):
        read_legacy_state_dict(wrong_magic)
    with pytest.raises(OSError, match="absent.pth"):
        read_legacy_state_dict(tmp_path / "absent.pth")


def test_forbidden_global_is_refused_and_not_run(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    command = f"touch {canary}".encode()
    # os.system("touch ...") as the state-dict pickle, by hand: pickle.dumps(os.system) would work too
    payload = (
        b"\x80\x02cos\nsystem\nX"
        + struct.pack("<I", len(command))
        + command
        + b"\x85R."  # TUPLE1 REDUCE STOP
    )
    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + payload)
    with pytest.raises(ValueError, match=r"evil.pth.*os\.system"):
        read_legacy_state_dict(path)
    assert not canary.exists()


def test_reader_on_the_package_file() -> None:
    state = read_legacy_state_dict(package_weights_file())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state  # expand ratio 1
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert {k.split(".")[1] for k in state if k.startswith("_blocks.")} == {str(i) for i in range(16)}
    assert all(v.dtype == np.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert np.all(state["_bn1.running_var"] >= 0)


# ------------------------------------------------------------------------------------------------ network


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache, selected through TFAD_CACHE_DIR for the whole module; converted once here."""
    directory = tmp_path_factory.mktemp("tfad_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TFAD_CACHE_DIR", str(directory))
        assert converted_weights() == directory / "efficientnet-lite0-imagenet.weights.h5"
        yield directory


@pytest.fixture(scope="module")
def classifier(cache_dir: Path) -> keras.Model:
    model = build_classifier()
    model.load_weights(converted_weights())  # the cache is a plain weights file of the classifier
    return model


def _square_224(image: np.ndarray) -> np.ndarray:
    """Centre crop to a square, then resize to 224x224 by area averaging; float RGB in [0, 255]."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    return cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)


def test_known_answers_on_scikit_image_samples(classifier: keras.Model) -> None:
    images = np.stack(
        [_square_224(f()) for f in (skimage.data.chelsea, skimage.data.coffee, skimage.data.rocket)]
    )
    top1 = np.argmax(np.asarray(classifier(images, training=False)), axis=1)
    assert 281 <= top1[0] <= 285, top1  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert top1[1] in (967, 968), top1  # espresso, cup
    assert top1[2] in (657, 744, 812), top1  # missile, projectile, space shuttle


def test_converted_weights_are_cached_once(cache_dir: Path) -> None:
    path = converted_weights()
    assert path.parent == cache_dir
    before = path.stat()
    assert converted_weights(cache_dir) == path
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert [p.name for p in cache_dir.iterdir()] == [path.name]  # no temporary file left behind


def test_extractor_shapes_and_cost() -> None:
    model = build_feature_extractor(256, 3, weights=None)
    outputs = model(np.zeros((2, 256, 256, 3), np.float32), training=False)
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 32, 40), (2, 16, 16, 112)]
    assert flops_per_image(256) == count_flops(model)
    assert 0.6e9 < flops_per_image(256) < 0.7e9
    assert flops_per_image(256, ("stride8",)) < flops_per_image(256)
    # only the blocks up to the deepest tap are built
    assert not any(layer.name.startswith(f"blocks_{STRIDE_TAPS['stride16'] + 1}_") for layer in model.layers)


def test_grey_input_equals_replicated_rgb() -> None:
    grey = build_feature_extractor(64, 1, weights=None)
    rgb = build_feature_extractor(64, 3, weights=None)
    rgb.set_weights(grey.get_weights())  # same layers in the same order; the grey one adds no weights
    image = np.random.default_rng(1).random((2, 64, 64, 1), dtype=np.float32)
    for a, b in zip(
        grey(image, training=False), rgb(np.repeat(image, 3, axis=-1), training=False), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def _randomise_batch_norms(model: keras.Model, seed: int) -> None:
    # fresh BatchNormalization layers are the identity (gamma 1, beta 0, mean 0, var 1): folding them would
    # pass even if the folding were wrong
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            gamma, beta, mean = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c)
            layer.set_weights([gamma, beta, mean, rng.uniform(0.3, 2.0, c)])


@pytest.mark.parametrize(
    ("size", "channels", "taps", "weights"),
    [
        (64, 1, ("stride8", "stride16"), None),
        (64, 3, ("stride4",), None),
        (96, 1, ("stride16", "stride8"), "package"),  # the line-fast backbone, outputs in the given order
    ],
)
def test_folded_features_equal_the_extractor(
    size: int, channels: int, taps: tuple, weights: str | None
) -> None:
    model = build_feature_extractor(size, channels, taps, weights=weights)
    if weights is None:
        _randomise_batch_norms(model, seed=size + channels)
    image = np.random.default_rng(2).random((3, size, size, channels), dtype=np.float32)
    expected = model(image, training=False)
    expected = expected if isinstance(expected, list) else [expected]
    got = folded_features(model, image)
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    for e, g in zip(expected, got, strict=True):
        e = np.asarray(e)
        np.testing.assert_allclose(np.asarray(g), e, rtol=0, atol=1e-5 * np.abs(e).max())
        assert np.abs(e).max() > 0.1  # a real signal, not two zero maps


def test_folded_features_refuse_other_models() -> None:
    inputs = keras.Input((8, 8, 1))
    other = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv")(inputs))
    with pytest.raises(ValueError, match="not a block output"):
        folded_features(other, np.zeros((1, 8, 8, 1), np.float32))


def test_extractor_matches_the_classifier_with_package_weights(classifier: keras.Model) -> None:
    model = build_feature_extractor(224, 3, taps=("stride16",), weights="package")
    stem = read_legacy_state_dict(package_weights_file())["_conv_stem.weight"]
    np.testing.assert_array_equal(model.get_layer("conv_stem").get_weights()[0], stem.transpose(2, 3, 1, 0))
    trunk = keras.Model(classifier.input, classifier.get_layer("blocks_10_add").output)
    image = _square_224(skimage.data.chelsea())[None]
    features = model(image / 255.0, training=False)  # one tap: the map itself, not a list
    np.testing.assert_allclose(np.asarray(features), np.asarray(trunk(image, training=False)), atol=1e-3)


def test_unsupported_weights_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "resnet.h5"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="resnet.h5"):
        build_feature_extractor(64, 3, weights=bad)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        build_feature_extractor(64, 3, weights=tmp_path / "missing.weights.h5")
    with pytest.raises(ValueError, match="stride64"):
        build_feature_extractor(64, 3, taps=("stride64",), weights=None)
