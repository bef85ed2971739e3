"""tfad fit's strategy and input rules without a cluster: CLI and TF_CONFIG validation, the strategy choice,
the config rules for shards and strategies, per-worker input pipelines, training from packed shards.

The multi-worker processes themselves (loopback jobs, a killed worker, loss scaling) are
``test_distributed.py``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "127.0.0.1:1234"], "--workers and --task-index go together"),
        (["--workers", "127.0.0.1", "--task-index", "0"], "is not host:port"),
        (["--workers", "127.0.0.1:99999,127.0.0.1:2", "--task-index", "0"], "not in 1..65535"),
        (["--workers", "a:1,a:1", "--task-index", "0"], "more than once"),
        (["--workers", "bad_host!:1", "--task-index", "0"], "not a host name"),
        (["--workers", "a:1,b:2", "--task-index", "2"], "out of range for 2 worker(s)"),
        (["--strategy", "one-device", "--workers", "a:1,b:2", "--task-index", "0"], "--workers is for"),
        (["--strategy", "mirrored", "--workers", "a:1,b:2", "--task-index", "1"], "--workers is for"),
        (["--strategy", "multi-worker"], "needs the cluster"),
    ],
)
def test_cli_rejects_bad_cluster_arguments(argv, message, tmp_path, capsys, monkeypatch) -> None:
    from tfad.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("name: x\n")
    assert main(["fit", str(config), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("tfad fit: error:") and "\n" not in err, err


@pytest.mark.parametrize(
    ("tf_config", "argv", "message"),
    [
        ("{not json", [], "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', [],
         "no parameter servers"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}', [],
         "out of range"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', [],
         "task must name"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}',
         ["--workers", "a:1,b:2", "--task-index", "0"], "use one of them"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}',
         ["--strategy", "one-device"], "trains in one process"),
    ],
)  # fmt: skip
def test_cli_rejects_bad_tf_config(tf_config, argv, message, tmp_path, capsys, monkeypatch) -> None:
    from tfad.cli import main

    monkeypatch.setenv("TF_CONFIG", tf_config)
    config = tmp_path / "config.yaml"
    config.write_text("name: x\n")
    assert main(["fit", str(config), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_strategy_choice() -> None:
    from tfad.training.distributed import choose_strategy, tf_config_for

    assert choose_strategy("auto", environ={}, num_gpus=0).kind == "one-device"
    assert choose_strategy("auto", environ={}, num_gpus=2).kind == "mirrored"
    two = json.dumps(tf_config_for(["h0:1", "h1:2"], 1))
    choice = choose_strategy("auto", environ={"TF_CONFIG": two})
    assert choice.kind == "multi-worker" and choice.worker_index == 1 and not choice.is_chief
    assert choice.workers == ("h0:1", "h1:2") and choice.source == "TF_CONFIG"
    # one worker named: auto stays single-process; a "chief" task is rank 0, workers follow
    one = json.dumps(tf_config_for(["h0:1"], 0))
    assert choose_strategy("auto", environ={"TF_CONFIG": one}, num_gpus=0).kind == "one-device"
    chief = {"cluster": {"chief": ["c:1"], "worker": ["w:2", "w:3"]}, "task": {"type": "worker", "index": 1}}
    choice = choose_strategy("multi-worker", environ={"TF_CONFIG": json.dumps(chief)})
    assert choice.worker_index == 2 and choice.workers == ("c:1", "w:2", "w:3")
    built = choose_strategy("auto", "[::1]:5000,10.0.0.2:5000", 0, environ={})
    assert built.is_chief and built.tf_config["cluster"]["worker"] == ["[::1]:5000", "10.0.0.2:5000"]


def test_config_rules_for_shards_and_strategies(tiny_vials, tmp_path) -> None:
    from tfad.config import ConfigError, from_dict
    from tfad.training.fit import fit

    with pytest.raises(ConfigError, match="validation_fraction: 0"):
        from_dict({"data": {"shards": "packed/train"}})
    with pytest.raises(ConfigError, match="validation_shards needs data.shards"):
        from_dict({"data": {"validation_shards": "packed/val"}})
    with pytest.raises(ConfigError, match="blob family fits from image folders"):
        from_dict({"model": {"family": "blob"}, "data": {"shards": "p", "validation_fraction": 0}})
    blob = from_dict({"name": "b", "output_dir": str(tmp_path), "model": {"family": "blob"},
                      "data": {"root": str(tiny_vials), "image_size": 32}})  # fmt: skip
    with pytest.raises(ConfigError, match="no gradient training: --strategy mirrored"):
        fit(blob, progress=False, strategy="mirrored")


@pytest.fixture(scope="module")
def packed_vials(tiny_vials, tmp_path_factory):
    """The tiny vials' train split split by product (as tfad fit would) and packed: (train, validation)
    packs of the good images, 3 shard files each, and the records of each."""
    from tfad.data.layouts import read_dataset
    from tfad.data.packing import pack_dataset
    from tfad.training.data_selection import split_by_product

    records = read_dataset(str(tiny_vials), "train")
    train, val = split_by_product(records, 0.34, seed=0)
    out = tmp_path_factory.mktemp("packed")
    for name, part in (("train", train), ("validation", val)):
        pack_dataset(part, out / name, None, shard_size=-(-len(part) // 3), progress=False, split=name,
                     source_root=tiny_vials, shuffle_seed=0)  # fmt: skip
    return out / "train", out / "validation", train, val


def test_input_pipelines_share_the_data_between_workers(tiny_vials, packed_vials) -> None:
    """Two input pipelines (workers) read disjoint halves of the folder records / of the shard files whose
    union is everything, and draw different augmentation / P_q for the same stream position."""
    import hashlib

    from conftest import tiny_config

    from tfad.training.inputs import training_dataset

    train_pack, _, train, _ = packed_vials
    config = tiny_config(tiny_vials, Path("unused"), batch_size=4)

    def pass_of(pipeline: int, **source) -> tuple[set, np.ndarray]:
        ds = training_dataset(train, config, augment=False, num_pipelines=2, pipeline_id=pipeline, **source)
        # folders: one pass (a permutation per pass); shards: the shuffle buffer mixes passes, so read
        # about 12 passes' worth to see every image of the share
        share = len(train[pipeline::2]) if "shards" not in source else 12 * ds_records(pipeline)
        batches = list(ds.take(-(-share // 4)).as_numpy_iterator())
        targets = np.concatenate([b["target"] for b in batches])
        return {hashlib.sha1(t.tobytes()).hexdigest() for t in targets}, batches[0]["noise_mask"]

    def ds_records(pipeline: int) -> int:
        from tfad.data.shards import read_index

        return sum(e["records"] for e in read_index(train_pack)["shards"][pipeline::2])

    for source in ({}, {"shards": str(train_pack)}):
        (a, mask_a), (b, mask_b) = pass_of(0, **source), pass_of(1, **source)
        assert not a & b and len(a | b) == len(train), source  # disjoint shares, union = the training set
        assert not np.array_equal(mask_a, mask_b), source  # sample k of each worker: its own P_q draw


def test_fit_reads_packed_shards(tiny_vials, packed_vials, tmp_path) -> None:
    """data.shards / data.validation_shards instead of the folders: trains, records the pack in run.json;
    a pack holding labelled defects is refused for a family that trains on good images."""
    from conftest import tiny_config

    from tfad.config import ConfigError, from_dict
    from tfad.data.packing import pack_dataset
    from tfad.data.shards import read_index
    from tfad.training.fit import fit

    train_pack, val_pack, train, val = packed_vials
    base = tiny_config(tiny_vials, tmp_path, epochs=1, steps_per_epoch=4).to_dict()
    base["data"].update(
        root="", shards=str(train_pack), validation_shards=str(val_pack), validation_fraction=0
    )
    result = fit(from_dict(base), progress=False)
    assert result.status == "finished" and result.global_step == 4
    assert np.isfinite(result.history[0]["val_generator_loss"])
    info = json.loads((result.run_dir / "run.json").read_text())["training_data"]
    assert info["shards"] == str(train_pack) and info["validation_shards"] == str(val_pack)
    assert (info["train_images"], info["validation_images"]) == (len(train), len(val))
    assert info["fingerprint"] == read_index(train_pack)["source"]["fingerprint"]

    from tfad.data.layouts import read_dataset

    labelled = pack_dataset(read_dataset(str(tiny_vials), "test"), tmp_path / "test-pack", None,
                            progress=False, split="test")  # fmt: skip
    base["data"].update(shards=labelled.out_dir, validation_shards=None)
    base["name"] = "defects"
    with pytest.raises(ConfigError, match="labelled defective image"):
        fit(from_dict(base), progress=False)


def test_supervised_classes_from_packed_shards(tiny_vials, tmp_path) -> None:
    """The supervised families read each example's class from the pack's metadata (packed_records):
    the same classes, per stored index, as from the folders."""
    from tfad.config import from_dict
    from tfad.data.layouts import read_dataset
    from tfad.data.packing import pack_dataset
    from tfad.data.records import class_indices
    from tfad.training.data_selection import with_class_names
    from tfad.training.inputs import class_table, packed_records, supervised_dataset

    records = read_dataset(str(tiny_vials), "calib")
    pack_dataset(records, tmp_path / "calib", None, shard_size=16, progress=False, split="calib",
                 source_root=tiny_vials, shuffle_seed=1)  # fmt: skip
    by_index = packed_records(str(tmp_path / "calib"))
    assert sorted(by_index) == list(range(len(records)))
    assert [(r.label, r.defect_type, r.product_id) for r in (by_index[i] for i in range(len(records)))] == [
        (r.label, r.defect_type, r.product_id) for r in records
    ]
    config = from_dict({"model": {"family": "segmentation"}, "data": {"image_size": 32}})
    config = with_class_names(config, records)
    table = class_table(by_index, config.supervised.classes)
    np.testing.assert_array_equal(table, class_indices(records, config.supervised.classes))
    ds = supervised_dataset(None, config, config.supervised.classes, augment=False,
                            shards=str(tmp_path / "calib"), classes_by_index=table)  # fmt: skip
    batch = next(iter(ds))
    assert batch["class"].shape == (config.training.batch_size,) and batch["mask"].shape[1:] == (32, 32, 1)
