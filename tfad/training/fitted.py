"""``tfad fit`` of a family without gradient training (``ModelFamily.trainable = False``: blob analysis,
the embedding family): one call of the family's ``fit_without_training`` into the run directory, with the
same config.yaml and run.json as a trained run (one "epoch" in the history)."""

from __future__ import annotations

import logging
import time

from tfad.families.base import ModelFamily
from tfad.rundir import CONFIG_FILE
from tfad.schema import Config, dump_config
from tfad.training.data_selection import TrainingData
from tfad.training.epoch_loop import SetupInterrupted, interruption_record, stop_signals_abort_setup
from tfad.training.run_directory import FitResult, RunHistory, new_run_info

log = logging.getLogger(__name__)


def fit_without_training(
    config: Config, model_family: ModelFamily, data: TrainingData, progress: bool = True
) -> FitResult:
    """``tfad fit`` of a family without gradient training (blob analysis, the embedding family): the family
    fits on the training images (one streaming pass) into the run directory."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / CONFIG_FILE)
    started = time.perf_counter()
    arch = model_family.architecture(config).to_dict()
    info = new_run_info(config, arch, data.description, inference_gflops_per_patch=None)
    history = RunHistory(run_dir, info)
    history.write_info()
    try:
        with stop_signals_abort_setup():  # a scheduler's SIGTERM / Ctrl-C: "interrupted", --resume redoes it
            summary = model_family.fit_without_training(
                config, list(data.records), list(data.train), list(data.val), run_dir, progress=progress
            )
    except SetupInterrupted as stop:
        history.info.setdefault("interruptions", []).append(interruption_record(stop.reason, 0, None, False))
        history.write_info(status="interrupted")
        log.warning(
            "%s: the fit of %s stopped; `tfad fit %s --resume` fits it again", stop.reason, config.name,
            run_dir / CONFIG_FILE,
        )  # fmt: skip
        return FitResult(run_dir, 0, 0, "interrupted", info["history"])
    except BaseException:
        history.write_info(status="failed")
        raise
    top_level = {k: summary.pop(k) for k in ("network_build", "inference_gflops_per_patch") if k in summary}
    row = {"epoch": 1, "step": 0, "seconds": round(time.perf_counter() - started, 1)}
    history.add_epoch(row)
    history.write_info(status="finished", epochs_done=1, analyzer=summary, **top_level)
    log.info("fitted %s (%s) in %.1f s: %s", config.name, model_family.title, row["seconds"], summary)
    return FitResult(run_dir, 0, 1, "finished", info["history"])
