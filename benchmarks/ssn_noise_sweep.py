"""SuperSimpleNet's feature-noise scale on magnetic_tile: image AUROC against training steps per sigma.

    .venv/bin/python benchmarks/ssn_noise_sweep.py --sigmas 0.5,1.0,2.0 --steps 1000

Trains the ``line`` preset's adaptor and heads on the cached backbone features of ``train/good`` (the same
cache ``tfad fit`` writes; batch 16, Adam at ``--learning-rate``, no validation split) for each relative
noise sigma (``supersimplenet.noise_sigma``), and every ``--every`` steps scores magnetic_tile's whole test
split by the maximum of the grid's map logits (before upsampling and blur) and by the classification logit.
This scores on the test split: it is how the family's defaults were chosen (docs/supersimplenet.md says
so), not a qualification figure; ``benchmarks/train_magnetic_tile.py`` measures the trained, exported path.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--sigmas", default="0.5,1.0,2.0")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench_out/ssn_noise_sweep"))
    args = parser.parse_args()

    import tensorflow as tf

    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.families.supersimplenet.feature_cache import build_cache
    from tfad.families.supersimplenet.networks import SuperSimpleNetNetworks
    from tfad.families.supersimplenet.presets import PRESETS
    from tfad.families.supersimplenet.trainer import SuperSimpleNetTrainer
    from tfad.scoring.metrics import image_auroc

    arch = PRESETS["line"]
    extractor = SuperSimpleNetNetworks(arch)
    config = SimpleNamespace(data=SimpleNamespace(image_size=256, channels=1, on_corrupt="skip"))
    train_records = [r for r in read_dataset(str(args.data), "train", "mvtec") if r.label == 0]
    cache = build_cache(train_records, extractor, config, args.out, "train", with_masks=False)
    train = np.asarray(cache.features)
    test_records = read_dataset(str(args.data), "test", "mvtec")
    labels = np.array([r.label for r in test_records])
    batches = [load_images(test_records[i : i + 32], (256, 256), 1) for i in range(0, len(test_records), 32)]
    test = np.concatenate([extractor.features(tf.constant(b, tf.float32) / 255).numpy() for b in batches])
    print(f"{len(train)} training images (cached features), {len(test)} test images", flush=True)
    print("| sigma | steps | loss | image AUROC map-max | image AUROC classification | seconds |")
    print("|---|---|---|---|---|---|")
    for sigma in [float(s) for s in args.sigmas.split(",")]:
        tf.keras.utils.set_random_seed(args.seed)
        networks = SuperSimpleNetNetworks(arch, pretrained=False)  # the heads only: features are cached
        trainer = SuperSimpleNetTrainer(networks, "unsupervised", sigma, 0.2, seed=args.seed)
        trainer.compile_with_adam(args.learning_rate, 0.9, args.steps, None)
        step = tf.function(trainer.train_step)
        rng = np.random.default_rng(args.seed)
        g = arch.grid_size
        start = time.perf_counter()
        for k in range(1, args.steps + 1):
            rows = rng.choice(len(train), 16, replace=False)
            logs = step({"features": tf.constant(train[rows]), "mask": tf.zeros([16, g, g, 1]),
                         "label": tf.zeros([16])})  # fmt: skip
            if k % args.every == 0:
                out = networks.heads(networks.adaptor(tf.constant(test)), training=False)
                by_map = out["map_logits"].numpy().reshape(len(test), -1).max(axis=1)
                by_head = out["score_logit"].numpy()
                loss, seconds = float(logs["total_loss"][0]), time.perf_counter() - start
                print(
                    f"| {sigma:g} | {k} | {loss:.3f} | {image_auroc(labels, by_map):.3f} | "
                    f"{image_auroc(labels, by_head):.3f} | {seconds:.0f} |",
                    flush=True,
                )
                trainer.reset_metrics()


if __name__ == "__main__":
    main()
