"""The fused kernels of tfad.scoring.native: TfadSsim gives tf.image.ssim's values and TfadMinmaxHeatmap the
TensorFlow-ops heatmap's for every shape they accept, clear errors for the shapes they refuse, and the
library build's failure modes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfad.losses.reconstruction import ssim
from tfad.scoring import native
from tfad.scoring.reconstruction import ssim_score


def _pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random(shape, dtype=np.float32)
    # A reconstruction-like partner: close to x with local structure changed, so SSIM spans a useful range.
    y = np.clip(x + rng.normal(0.0, 0.1, shape).astype(np.float32), 0.0, 1.0)
    return x, y


@pytest.mark.parametrize(
    "shape",
    [(3, 11, 11, 1), (4, 37, 50, 1), (2, 64, 48, 3), (5, 256, 256, 1), (1, 40, 23, 2)],
)
def test_fused_ssim_equals_tf_image_ssim(shape):
    x, y = _pair(shape, seed=sum(shape))
    fused = native.fused_ssim(x, y).numpy()
    reference = tf.image.ssim(x, y, max_val=1.0, filter_size=11, filter_sigma=1.5).numpy()
    assert fused.shape == (shape[0],)
    np.testing.assert_allclose(fused, reference, atol=1e-5)
    # and the training loss's separable SSIM, which the score used before the kernel
    np.testing.assert_allclose(fused, ssim(x, y).numpy(), atol=1e-5)


def test_fused_ssim_of_identical_and_constant_images():
    x, _ = _pair((2, 32, 32, 1), seed=1)
    np.testing.assert_allclose(native.fused_ssim(x, x).numpy(), [1.0, 1.0], atol=1e-6)
    flat = np.full((1, 16, 16, 1), 0.5, np.float32)
    np.testing.assert_allclose(native.fused_ssim(flat, flat).numpy(), [1.0], atol=1e-6)
    # a constant image against its negative: luminance differs, SSIM well below 1
    assert native.fused_ssim(flat, 1.0 - flat * 1.6).numpy()[0] < 0.9


def test_fused_ssim_of_an_empty_batch_and_in_a_traced_function():
    empty = np.zeros((0, 32, 32, 1), np.float32)
    assert native.fused_ssim(empty, empty).numpy().shape == (0,)
    x, y = _pair((7, 40, 40, 1), seed=2)
    traced = tf.function(ssim_score, input_signature=[tf.TensorSpec([None, 40, 40, 1])] * 2)
    np.testing.assert_allclose(traced(x, y).numpy(), 1.0 - ssim(x, y).numpy(), atol=1e-5)


def test_fused_ssim_is_the_same_for_an_image_alone_and_in_a_batch():
    x, y = _pair((6, 48, 48, 1), seed=3)
    batch = native.fused_ssim(x, y).numpy()
    alone = [native.fused_ssim(x[i : i + 1], y[i : i + 1]).numpy()[0] for i in range(6)]
    assert batch.tolist() == alone  # bit for bit: the sum order does not depend on the sharding


def _tf_minmax_heatmap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # The heatmap as TensorFlow ops (the definition the kernel replaced).
    diff = tf.reduce_mean(tf.abs(x - y), axis=-1)
    low = tf.reduce_min(diff, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(diff, axis=[1, 2], keepdims=True)
    return ((diff - low) / tf.maximum(high - low, 1e-8)).numpy()


@pytest.mark.parametrize("shape", [(3, 1, 1, 1), (4, 37, 50, 1), (2, 64, 48, 3), (5, 256, 256, 1)])
def test_fused_heatmap_equals_the_tensorflow_ops(shape):
    x, y = _pair(shape, seed=sum(shape) + 7)
    heatmap = native.fused_minmax_heatmap(x, y).numpy()
    assert heatmap.shape == shape[:3]
    np.testing.assert_allclose(heatmap, _tf_minmax_heatmap(x, y), atol=1e-6)
    if shape[1] * shape[2] > 1:
        assert heatmap.min() == 0.0 and heatmap.max() == pytest.approx(1.0)


def test_fused_heatmap_of_a_perfect_reconstruction_is_zero_and_localises_a_defect():
    x, _ = _pair((2, 32, 32, 1), seed=5)
    assert not native.fused_minmax_heatmap(x, x).numpy().any()
    damaged = x.copy()
    damaged[1, 10:14, 20:24, 0] = 1.0  # a bright square on image 1
    heatmap = native.fused_minmax_heatmap(x, damaged).numpy()
    assert not heatmap[0].any()
    assert np.unravel_index(heatmap[1].argmax(), heatmap[1].shape)[0] in range(10, 14)
    assert heatmap[1, :8].max() == 0.0
    empty = np.zeros((0, 8, 8, 1), np.float32)
    assert native.fused_minmax_heatmap(empty, empty).numpy().shape == (0, 8, 8)


@pytest.mark.parametrize("kernel", [native.fused_ssim, native.fused_minmax_heatmap])
def test_fused_kernels_refuse_a_batch_that_is_not_nhwc(kernel):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must be \[N, H, W, C\]"):
        kernel(np.zeros((2, 32, 32), np.float32), np.zeros((2, 32, 32), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one shape"):
        kernel(np.zeros((2, 32, 32, 1), np.float32), np.zeros((2, 32, 31, 1), np.float32))


@pytest.mark.parametrize(
    "x_shape, y_shape, message",
    [
        ((2, 32, 32), (2, 32, 32), r"must be \[N, H, W, C\]"),
        ((2, 32, 32, 1), (2, 32, 31, 1), "one shape"),
        ((2, 10, 32, 1), (2, 10, 32, 1), "at least 11x11"),
    ],
)
def test_fused_ssim_refuses_bad_shapes_with_a_clear_error(x_shape, y_shape, message):
    x = np.zeros(x_shape, np.float32)
    y = np.zeros(y_shape, np.float32)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        native.fused_ssim(x, y)


@pytest.mark.parametrize("kernel", [native.fused_ssim, native.fused_minmax_heatmap])
def test_fused_kernels_have_no_gradient(kernel):
    x = tf.Variable(np.random.default_rng(4).random((1, 16, 16, 1), dtype=np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(kernel(x, x * 0.5))
    assert tape.gradient(value, x) is None


def test_a_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("TFAD_OPS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-tfad")
    with pytest.raises(native.NativeOpsError, match="no-such-compiler-tfad"):
        native.build()


def test_the_library_is_keyed_by_its_source(monkeypatch, tmp_path):
    monkeypatch.setenv("TFAD_OPS_CACHE", str(tmp_path))
    before = native.library_path()
    assert before.parent == tmp_path and not before.exists()
    changed = tmp_path / "reconstruction_ops.cc"
    changed.write_text(native.KERNEL_SOURCES[0].read_text() + "\n// changed\n")
    monkeypatch.setattr(native, "KERNEL_SOURCES", (changed,))
    assert native.library_path() != before


_VARIANT_RUN = (
    "import sys, numpy as np\n"
    "from tfad.scoring import native\n"
    "data = np.load(sys.argv[1])\n"
    "try:\n"
    "    ssim = native.fused_ssim(data['x'], data['y']).numpy()\n"
    "    heatmap = native.fused_minmax_heatmap(data['x'], data['y']).numpy()\n"
    "    colour_ssim = native.fused_ssim(data['colour_x'], data['colour_y']).numpy()\n"
    "except Exception as error:\n"
    "    sys.exit(str(error))\n"
    "np.savez(sys.argv[2], ssim=ssim, heatmap=heatmap, colour_ssim=colour_ssim)\n"
)

# A second batch whose rows end in a partial vector in every variant (19 outputs per row: 16 + 3, 8 + 8 + 3,
# 4 x 4 + 3), with an odd number of output rows (27, so the kernel's last row is made alone) and 3 channels.
_COLOUR_SHAPE = (2, 37, 29, 3)


def _run_variant(tmp_path, cap: str) -> subprocess.CompletedProcess:
    x, y = _pair((3, 64, 80, 1), seed=9)
    colour_x, colour_y = _pair(_COLOUR_SHAPE, seed=10)
    np.savez(tmp_path / "in.npz", x=x, y=y, colour_x=colour_x, colour_y=colour_y)
    env = {**os.environ, "TFAD_KERNELS_MAX_ISA": cap}
    command = [sys.executable, "-c", _VARIANT_RUN, str(tmp_path / "in.npz"), str(tmp_path / f"{cap}.npz")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("cap", ["avx512", "avx2", "baseline"])
def test_every_instruction_set_variant_gives_the_same_values(tmp_path, cap):
    # Each variant runs in a child process (the choice is made once per process): this machine's widest
    # ("avx512" caps nothing), the slow line PCs' AVX2 path, and plain x86-64.
    result = _run_variant(tmp_path, cap)
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / f"{cap}.npz")
    x, y = _pair((3, 64, 80, 1), seed=9)
    np.testing.assert_allclose(out["ssim"], tf.image.ssim(x, y, max_val=1.0).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["heatmap"], _tf_minmax_heatmap(x, y), atol=1e-6)
    colour_x, colour_y = _pair(_COLOUR_SHAPE, seed=10)
    np.testing.assert_allclose(
        out["colour_ssim"], tf.image.ssim(colour_x, colour_y, max_val=1.0).numpy(), atol=1e-5
    )


def test_an_unknown_instruction_set_cap_is_named(tmp_path):
    result = _run_variant(tmp_path, "sse9")
    assert result.returncode != 0
    assert "TFAD_KERNELS_MAX_ISA=sse9: expected avx512, avx2 or baseline" in result.stderr


def test_ops_are_registered_only_for_exports_that_use_them(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(native, "register_ops", lambda: calls.append("registered"))
    plain, fused = tmp_path / "plain", tmp_path / "fused"
    plain.mkdir()
    fused.mkdir()
    (plain / "saved_model.pb").write_bytes(b"\x0a\x06Conv2D\x0a\x04Relu")
    (fused / "saved_model.pb").write_bytes(b"\x0a\x06Conv2D\x0a\x08TfadSsim")
    native.register_ops_for(plain)
    native.register_ops_for(tmp_path / "missing")  # no graph: tf.saved_model.load reports that itself
    assert calls == []
    native.register_ops_for(fused)
    assert calls == ["registered"]


def test_an_unwritable_cache_is_named(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TFAD_OPS_CACHE", str(blocker / "ops"))
    with pytest.raises(native.NativeOpsError, match="TFAD_OPS_CACHE to a writable directory"):
        native.build()


def _old_libraries(cache: Path, ages_days: dict[str, float]) -> dict[str, Path]:
    """Fake libraries of other keys in ``cache``, last used ``ages_days`` ago."""
    now = time.time()
    made = {}
    for key, age in ages_days.items():
        path = cache / f"libtfad_scoring_ops-{key}.so"
        path.write_bytes(b"not a library")
        os.utime(path, (now - age * 86400, now - age * 86400))
        made[key] = path
    return made


def _fake_compiler(monkeypatch, tmp_path) -> None:
    """Builds in ``tmp_path`` that write an empty file instead of compiling (pruning does not open them)."""
    monkeypatch.setenv("TFAD_OPS_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_build_command", lambda compiler, output, sources=(): ["touch", str(output)])


def test_a_new_build_deletes_only_other_keys_left_unused(monkeypatch, tmp_path):
    _fake_compiler(monkeypatch, tmp_path)
    old = _old_libraries(tmp_path, {"stale": native.STALE_AFTER_DAYS + 1, "recent": 1.0})
    library = native.build()
    assert library.exists()
    assert not old["stale"].exists() and old["recent"].exists()


def test_prune_deletes_every_other_key_and_keeps_the_current_library(monkeypatch, tmp_path):
    _fake_compiler(monkeypatch, tmp_path)
    library = native.build()
    old = _old_libraries(tmp_path, {"recent": 0.0, "older": 3.0})
    assert sorted(native.prune()) == sorted(old.values())
    assert library.exists() and not any(path.exists() for path in old.values())
    assert native.prune() == []


def test_prune_of_a_missing_cache_deletes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("TFAD_OPS_CACHE", str(tmp_path / "never-built"))
    assert native.prune() == []


def test_loading_the_library_marks_it_as_used():
    library = native.build()
    long_ago = time.time() - 2 * native.STALE_AFTER_DAYS * 86400
    os.utime(library, (long_ago, long_ago))
    native.register_ops.__wrapped__()  # the uncached load, as a new process does it
    assert library.stat().st_mtime > time.time() - 3600


def test_the_command_line_prunes_on_request(monkeypatch, tmp_path, capsys):
    _fake_compiler(monkeypatch, tmp_path)
    old = _old_libraries(tmp_path, {"recent": 0.0})
    native.main([])
    assert old["recent"].exists()
    native.main(["--prune"])
    assert not old["recent"].exists()
    assert f"deleted {old['recent']}" in capsys.readouterr().out


def test_a_source_that_does_not_compile_is_named_with_the_compiler_output(tmp_path):
    broken = tmp_path / "broken_kernel.cc"
    broken.write_text("this is not C++\n")
    message = "(?s)building tfad.s scoring ops failed.*broken_kernel.cc"
    with pytest.raises(native.NativeOpsError, match=message):
        native.compile_library(tmp_path / "libbroken.so", (broken,))
    assert not (tmp_path / "libbroken.so").exists()
