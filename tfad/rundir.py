"""Names and formats of what tfad writes to disk: a run directory (``tfad fit``) and an exported model
version (``tfad export``). Every layer may import this module; it imports nothing.

A run directory ``<output_dir>/<name>/`` holds::

    config.yaml       the full configuration (defaults filled in)
    run.json          architecture, data fingerprint and counts, progress, status, per-epoch history
    history.csv       one row per finished epoch (train and validation losses, learning rate, time)
    checkpoints/      tf.train checkpoints (networks + optimizers + step), every N steps and per epoch;
                      checkpoints/best/ the best epoch's when early stopping is on
    tensorboard/      TensorBoard scalars (per 50 steps and per epoch)
    plots/            training curves and validation samples, redrawn after every epoch
    thresholds.json   written by ``tfad calibrate``

A fitted family (no gradient training) saves what it fitted in a folder of its own choosing instead of
checkpoints/. An exported version ``savedmodels/<name>/<version>/`` holds the SavedModel (or a fitted
family's own files) and ``tfad_manifest.json`` (docs/architecture.md, "SavedModel contract").
"""

RUN_FORMAT = "tfad-run/1"
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # under CHECKPOINT_DIR: the best epoch's checkpoint when early stopping is on
TENSORBOARD_DIR = "tensorboard"
PLOTS_DIR = "plots"
THRESHOLDS_FILE = "thresholds.json"

MANIFEST_FILE = "tfad_manifest.json"
# Stated tolerance between an export's two signatures (serving_default, score_only) on the same images:
# |full - score_only| <= ATOL + RTOL x |full|. tfad export checks it, and both servers at load
# (cc/model_manager.cc mirrors the numbers). One function traced twice: measured equal (0.0) so far.
SCORE_PATHS_ATOL, SCORE_PATHS_RTOL = 1e-5, 1e-4
MANIFEST_FORMAT = "tfad-manifest/1"
SAVEDMODEL_RUNTIME = "savedmodel"  # the manifest's "runtime" of every TensorFlow family's export
