"""The two servers' bilinear resize is bit-identical (docs/serving.md, "Resize policy").

The C++ arithmetic (cc/image_resize.cc, run through bazel-bin/cc/resize_bilinear_tool) and the Python
server's (tfad.serving.contract.resize_bilinear) are compared byte for byte on seeded random images:
up- and down-scaling, odd sizes, 1x1 edges, 1-4 channels, including the product's 256x256 target.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from serving_testutils import REPO

from tfad.serving.contract import resize_bilinear

TOOL = REPO / "bazel-bin" / "cc" / "resize_bilinear_tool"


def _cases(seed: int = 7, count: int = 300) -> list[tuple[np.ndarray, int, int]]:
    rng = np.random.default_rng(seed)
    fixed = [((1, 1), (256, 256)), ((300, 280), (256, 256)), ((512, 512), (256, 256)),
             ((255, 257), (256, 256)), ((256, 256), (1, 1)), ((3, 7), (13, 2))]  # fmt: skip
    cases = []
    for (sh, sw), (dh, dw) in fixed:
        cases.append((rng.integers(0, 256, (sh, sw, 1), dtype=np.uint8), dh, dw))
    while len(cases) < count:
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 97, 4))
        c = int(rng.integers(1, 5))
        image = rng.integers(0, 256, (sh, sw, c), dtype=np.uint8)
        if rng.random() < 0.3:  # smooth ramps: many outputs land near .5, where rounding differences show
            ramp = np.linspace(0, 255, sw, dtype=np.float32)[None, :, None]
            image = np.broadcast_to(np.round(ramp), (sh, sw, c)).astype(np.uint8)
        cases.append((image, dh, dw))
    return cases


def test_python_and_cc_bilinear_resize_are_bit_identical():
    if not TOOL.exists():
        message = f"{TOOL} not built: run `make cc-build`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    cases = _cases()
    stdin = b"".join(
        f"{img.shape[0]} {img.shape[1]} {img.shape[2]} {dh} {dw}\n".encode() + img.tobytes()
        for img, dh, dw in cases
    )
    done = subprocess.run([str(TOOL)], input=stdin, capture_output=True, check=True)
    offset = 0
    for index, (image, dh, dw) in enumerate(cases):
        size = dh * dw * image.shape[2]
        cc = np.frombuffer(done.stdout[offset : offset + size], np.uint8).reshape(dh, dw, image.shape[2])
        offset += size
        python = resize_bilinear(image, dh, dw)
        differing = int(np.count_nonzero(cc != python))
        assert differing == 0, f"case {index}: {image.shape} -> {dh}x{dw}: {differing} pixels differ"
    assert offset == len(done.stdout)
