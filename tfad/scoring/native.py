"""tfad's fused scoring kernels: TensorFlow ops compiled from ``tfad/scoring/kernels/*.cc``.

``TfadSsim`` computes a batch's per-image SSIM in one pass over each image (the separable Gaussian, SSIM's
formula and the mean, fused), where TensorFlow ops stream a product's maps through memory a dozen times;
``TfadMinmaxHeatmap`` the min-max normalised |x - y| in two passes instead of five.
Exported SavedModels whose score uses them need the ops registered before they load: the C++ server links
them into its TensorFlow backend (cc/BUILD); Python calls :func:`register_ops_for` on the export (tfad's own
loaders do) or :func:`register_ops`.

The library is compiled from the shipped source with the TensorFlow wheel's own flags, once per source,
TensorFlow version and compiler, into ``$TFAD_OPS_CACHE`` (default ``~/.cache/tfad/ops``); ``make setup``
builds it, and a process that finds it missing builds it (about 5 s) under a file lock, so parallel workers
build it once. ``python -m tfad.scoring.native`` builds it and prints where.

Each load marks its library as used (its modification time), and each new build deletes the libraries of
other keys left unused for ``STALE_AFTER_DAYS``, so upgrades do not pile up old libraries while two
environments sharing one cache keep theirs. ``python -m tfad.scoring.native --prune`` deletes every other
key's library at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import tensorflow as tf

_log = logging.getLogger(__name__)

KERNEL_SOURCES = (Path(__file__).resolve().parent / "kernels" / "reconstruction_ops.cc",)
#: The ops the library registers (their names as they appear in an exported graph).
OP_NAMES = ("TfadSsim", "TfadMinmaxHeatmap")
_OPTIMISATION = ["-O3", "-shared", "-fPIC", "-Wno-deprecated-declarations"]
_LIBRARY_PATTERN = "libtfad_scoring_ops-*.so"
#: A library of another key that no process loaded for this long is deleted by the next build.
STALE_AFTER_DAYS = 30.0


class NativeOpsError(RuntimeError):
    """tfad's scoring ops could not be built or loaded (no compiler, a failed compilation)."""


def _compiler() -> str:
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise NativeOpsError(
            f"tfad's scoring ops need a C++ compiler to build once, and {compiler!r} was not found: install "
            "g++ (Debian: apt-get install g++) or set CXX"
        )
    return compiler


def cache_dir() -> Path:
    """Where built libraries are kept: ``$TFAD_OPS_CACHE``, else ``$XDG_CACHE_HOME/tfad/ops`` or
    ``~/.cache/tfad/ops``."""
    if os.environ.get("TFAD_OPS_CACHE"):
        return Path(os.environ["TFAD_OPS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tfad" / "ops"


def _build_command(compiler: str, output: Path, sources: Sequence[Path] = KERNEL_SOURCES) -> list[str]:
    return [
        compiler,
        *_OPTIMISATION,
        *map(str, sources),
        "-o",
        str(output),
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]


def library_path() -> Path:
    """The library built from this source, TensorFlow version and compiler (it may not exist yet)."""
    compiler = _compiler()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256()
    for source in KERNEL_SOURCES:
        key.update(source.read_bytes())
    key.update(tf.__version__.encode())
    key.update(version.encode())
    key.update(" ".join(_build_command(compiler, Path("out"))).encode())
    return cache_dir() / _LIBRARY_PATTERN.replace("*", key.hexdigest()[:16])


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """The cache's build lock, held by builds and pruning, so concurrent processes take turns."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / ".build.lock", "w")  # closed by the with below
    except OSError as error:
        raise NativeOpsError(
            f"cannot write tfad's scoring ops to {directory} ({error}): "
            "set TFAD_OPS_CACHE to a writable directory"
        ) from error
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build() -> Path:
    """Build the ops library if it is missing (under a lock, so concurrent processes build it once);
    its path. Raises :class:`NativeOpsError` with the compiler's output when compilation fails."""
    library = library_path()
    if library.exists():
        return library
    with _build_lock(library.parent):
        if library.exists():  # another process built it while this one waited
            return library
        _log.info("building tfad's scoring ops into %s (once, about 5 s)", library)
        with tempfile.TemporaryDirectory(dir=library.parent) as scratch:
            partial = Path(scratch) / library.name
            compile_library(partial)
            os.replace(partial, library)  # atomic: a reader never sees half a library
        _prune_locked(library, STALE_AFTER_DAYS)
    return library


def compile_library(output: Path, sources: Sequence[Path] = KERNEL_SOURCES) -> None:
    """Compile kernel ``sources`` (by default tfad's own) into the op library ``output``, with the flags
    :func:`build` uses; ``benchmarks/scoring_kernels.py`` builds other versions of the kernels with it.
    Raises :class:`NativeOpsError` with the compiler's output when compilation fails."""
    result = subprocess.run(
        _build_command(_compiler(), output, sources), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise NativeOpsError(
            f"building tfad's scoring ops failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )


def prune(max_age_days: float | None = None) -> list[Path]:
    """Delete the cache's libraries of other keys (other sources, TensorFlow versions or compilers): those
    unused for ``max_age_days``, or all of them when it is None. The deleted paths.

    A process that has a deleted library loaded keeps it mapped; one that needs it again rebuilds it."""
    library = library_path()
    if not library.parent.is_dir():
        return []
    with _build_lock(library.parent):
        return _prune_locked(library, max_age_days)


def _prune_locked(keep: Path, max_age_days: float | None) -> list[Path]:
    """:func:`prune`'s work, with the build lock held."""
    deadline = None if max_age_days is None else time.time() - max_age_days * 86400
    removed = []
    for old in keep.parent.glob(_LIBRARY_PATTERN):
        if old == keep:
            continue
        try:
            if deadline is None or old.stat().st_mtime < deadline:
                old.unlink()
                removed.append(old)
        except OSError as error:  # another process removed it, or the cache is read-only: keep going
            _log.warning("could not delete the old scoring ops library %s: %s", old, error)
    if removed:
        _log.info("deleted %d old scoring ops libraries from %s", len(removed), keep.parent)
    return removed


@functools.cache
def register_ops() -> types.ModuleType:
    """Build if needed and load tfad's ops into this process (once); the loaded module.

    Call it before ``tf.saved_model.load`` of an export whose score uses them."""
    library = build()
    try:
        module = tf.load_op_library(str(library))
    except tf.errors.OpError as error:
        raise NativeOpsError(
            f"loading tfad's scoring ops from {library} failed ({error}): delete it to rebuild"
        ) from error
    try:
        os.utime(library)  # marks it as used, so that pruning keeps it
    except OSError:  # a read-only cache: nothing prunes it either
        pass
    return module


def register_ops_for(savedmodel_dir: str | Path) -> None:
    """Register tfad's ops before ``tf.saved_model.load(savedmodel_dir)`` if that export's graph uses them, so
    exports that do not (a classifier, an embedding model) load on a machine without a C++ compiler."""
    graph = Path(savedmodel_dir) / "saved_model.pb"
    if graph.is_file() and any(name.encode() in graph.read_bytes() for name in OP_NAMES):
        register_ops()


def fused_ssim(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-image SSIM ``[N]`` of two NHWC float32 batches in [0, 1], by the ``TfadSsim`` kernel: the same
    definition as ``tf.image.ssim(max_val=1, filter_size=11, filter_sigma=1.5)`` and as
    :func:`tfad.losses.reconstruction.ssim` (equal within 1e-5, tested), without a gradient (scores only)."""
    return register_ops().tfad_ssim(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y, tf.float32))


def fused_minmax_heatmap(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-image min-max normalised |x - y| (mean over channels) ``[N, H, W]`` in [0, 1] of two NHWC float32
    batches, by the ``TfadMinmaxHeatmap`` kernel: all zero where the difference is constant; no gradient."""
    return register_ops().tfad_minmax_heatmap(
        tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y, tf.float32)
    )


tf.no_gradient("TfadSsim")
tf.no_gradient("TfadMinmaxHeatmap")


def main(argv: list[str] | None = None) -> None:
    """``python -m tfad.scoring.native [--prune]``: build the library and print its path; ``--prune`` also
    deletes every other key's library from the cache."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tfad.scoring.native", description=main.__doc__)
    parser.add_argument("--prune", action="store_true", help="delete the cache's libraries of other keys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(build())
        for old in prune() if args.prune else []:
            print(f"deleted {old}")
    except NativeOpsError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
