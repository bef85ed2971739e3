"""``tfad calibrate RUN``: per-region thresholds from a labelled qualification set, stored with the run."""

from __future__ import annotations

import argparse

from tfad.scoring.thresholds import DEFAULT_RULES, POLICIES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad calibrate``."""
    parser = subparsers.add_parser(
        "calibrate",
        help="choose per-region thresholds on a labelled set",
        description="Score a labelled split (good and defective images) with the run's model and choose one "
        "threshold per region by the given policy (n-sigma needs only good images: held-out ones, never the "
        "training images). Writes RUN/thresholds.json (used by tfad eval, "
        "tfad predict and tfad export) and RUN/calibration/ (scores, heatmaps, plots) for the audit.",
    )
    parser.add_argument("run", metavar="RUN", help="run directory written by tfad fit")
    parser.add_argument("--data", required=True, help="data set folder (MVTec or line layout)")
    parser.add_argument("--split", default="calib", help="split to calibrate on (default: calib)")
    parser.add_argument("--layout", choices=("auto", "mvtec", "line"), default="auto")
    parser.add_argument("--policy", choices=POLICIES, help="threshold policy (default: the config's)")
    parser.add_argument(
        "--false-reject-budget",
        type=float,
        help="largest accepted false-reject rate for --policy false-reject-budget, e.g. 0.01",
    )
    parser.add_argument(
        "--k",
        type=float,
        help="k of --policy n-sigma: threshold = mean + k * std of the good scores (default: the config's "
        "calibration.n_sigma_k, 3); needs no labelled defects, only held-out good images",
    )
    parser.add_argument(
        "--default",
        default="pooled",
        metavar="RULE",
        help=f"threshold of regions absent from the set: {' | '.join(DEFAULT_RULES)} | a number "
        "| none (default: pooled)",
    )
    parser.add_argument(
        "--no-acquisition-check",
        action="store_true",
        help="do not fit the acquisition check (the servers then score a dark, saturated or flat frame like "
        "any other; docs/serving.md, fail-safe rule 8): for lines whose lighting varies beyond its limits",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_calibrate)


def _default_rule(text: str):
    from tfad.cli import CLIError

    if text.lower() == "none":
        return None
    if text in DEFAULT_RULES:
        return text
    try:
        return float(text)
    except ValueError as err:
        raise CLIError(f"--default: {' | '.join(DEFAULT_RULES)}, a number or none, got {text!r}") from err


def _calibrate(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import math
    import shutil
    from datetime import UTC, datetime
    from pathlib import Path

    from tfad.cli import CLIError
    from tfad.data.errors import DataError
    from tfad.data.layouts import read_dataset
    from tfad.data.records import fingerprint
    from tfad.evaluation.scorer import load_scorer, save_table, score_records
    from tfad.rundir import THRESHOLDS_FILE
    from tfad.scoring.acquisition import fit_acquisition_check, stopped, weak_limits
    from tfad.scoring.thresholds import calibrate_table
    from tfad.training.runs import is_run_dir

    run_dir = Path(args.run)
    if not is_run_dir(run_dir):
        raise CLIError(
            f"{run_dir} is not a run directory of tfad fit (thresholds are stored with the run, "
            "then exported with it)"
        )
    from tfad.config import load_config

    scorer = load_scorer(run_dir)
    run_config = load_config(run_dir / "config.yaml")
    policy = args.policy or run_config.calibration.policy
    budget = (
        args.false_reject_budget
        if args.false_reject_budget is not None
        else run_config.calibration.false_reject_budget
    )
    if policy == "false-reject-budget" and budget is None:
        raise CLIError("--policy false-reject-budget needs --false-reject-budget (e.g. 0.01)")
    if policy != "false-reject-budget":
        budget = None
    if args.k is not None and policy != "n-sigma":
        raise CLIError(f"--k applies to --policy n-sigma, not {policy}")
    if args.k is not None and not (math.isfinite(args.k) and args.k >= 0):
        raise CLIError(f"--k must be a finite number >= 0, got {args.k}")
    n_sigma_k = (
        (args.k if args.k is not None else run_config.calibration.n_sigma_k) if policy == "n-sigma" else None
    )
    try:
        records = read_dataset(args.data, args.split, args.layout)
    except DataError as err:
        raise CLIError(str(err)) from err
    labelled = [r for r in records if r.label in (0, 1)]
    if not labelled:
        raise CLIError(f"split {args.split!r} of {args.data} has no labelled images")
    if policy == "n-sigma" and not any(r.label == 0 for r in labelled):
        raise CLIError(f"--policy n-sigma needs good images; split {args.split!r} of {args.data} has none")
    out_dir = run_dir / "calibration"
    scratch = out_dir / ".scratch"
    table, corrupt = score_records(
        scorer, labelled, scratch, args.batch_size, run_config.data.on_corrupt, progress=not args.no_progress
    )
    # the limits come from the good images as scored; thresholds from the patches the line will score (a
    # blank good image would otherwise lift a threshold with a score the line never compares)
    acquisition_check = None
    if not args.no_acquisition_check and ((table.labels == 0) & ~table.blanks).any():
        acquisition_check = fit_acquisition_check(
            table.regions, table.labels, table.pixel_means, table.pixel_stds, table.blanks
        )
        for line in weak_limits(acquisition_check):
            print(
                f"warning: the acquisition check's limits of {line}: a good calibration image of that region "
                "is nearly black, saturated or flat (a failed acquisition in the kit?); find it by the "
                f"pixel_mean and pixel_std columns of {out_dir / 'scores.csv'}, remove it and calibrate again"
            )
    gate = dataclasses.replace(scorer.gate, acquisition_check=acquisition_check)
    not_scored = stopped(gate.table_reasons(table))
    if not_scored.any():
        print(
            f"warning: {int(not_scored.sum())} calibration image(s) are blank or outside the acquisition "
            "check's limits; the line does not score them, so they do not set thresholds: "
            + ", ".join(str(p) for p in table.paths[not_scored][:5])
        )
    try:
        thresholds = calibrate_table(
            table.subset(~not_scored), policy, budget, _default_rule(args.default), n_sigma_k
        )
    except ValueError as err:
        raise CLIError(f"calibration failed: {err}") from err
    calibration = {
        "policy": policy,
        "false_reject_budget": budget,
        "n_sigma_k": n_sigma_k,
        "data": str(Path(args.data).resolve()),
        "split": args.split,
        "fingerprint": fingerprint(labelled),
        "images": len(table),
        "good": int((table.labels == 0).sum()),
        "defective": int((table.labels == 1).sum()),
        "unreadable": corrupt,
        "per_region": thresholds.to_dict()["per_region"],
        "checkpoint": Path(scorer.info["checkpoint"]).name,
        "global_step": scorer.info.get("global_step"),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (run_dir / THRESHOLDS_FILE).write_text(
        json.dumps(
            {
                "thresholds": thresholds.to_manifest(),
                "acquisition_check": None if acquisition_check is None else acquisition_check.to_manifest(),
                "calibration": calibration,
            },
            indent=2,
        )
        + "\n"
    )
    try:
        from tfad.evaluation.plots import plot_region_thresholds, plot_score_histograms

        plot_score_histograms(table, thresholds, str(out_dir / "score_histograms.png"))
        plot_region_thresholds(table, thresholds, str(out_dir / "region_thresholds.png"))
    except Exception as err:  # plots are a convenience; the thresholds are written already
        print(f"warning: calibration plots failed: {err}")
    save_table(table, out_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"policy {policy}"
        + (f" (false-reject budget {budget})" if budget is not None else "")
        + (f" (k = {n_sigma_k:g})" if n_sigma_k is not None else "")
        + f" on {len(table)} images ({calibration['good']} good, {calibration['defective']} defective)"
    )
    print(f"{'region':<10}{'threshold':>12}{'good':>7}{'defect':>8}{'accuracy':>10}{'TAR':>8}{'TRR':>8}")
    for region, stats in thresholds.to_dict()["per_region"].items():
        conf = stats.get("calibration", {})
        print(
            f"{region:<10}{stats['threshold']:>12.5f}{stats['n_good']:>7}{stats['n_defective']:>8}"
            + "".join(
                f"{_fmt(conf.get(k)):>{w}}"
                for k, w in (("accuracy", 10), ("true_accept_rate", 8), ("true_reject_rate", 8))
            )
        )
    if thresholds.default is not None:
        print(
            f"default threshold (regions not calibrated): {thresholds.default:.5f} "
            f"({thresholds.default_rule})"
        )
    if acquisition_check is None:
        print(
            "no acquisition check: "
            + (
                "--no-acquisition-check"
                if args.no_acquisition_check
                else "the split has no good image to learn from (none, or every one blank)"
            )
        )
    else:
        print("acquisition check (a patch outside is not scored on the line: REJECT_INCOMPLETE):")
        for region, limits in acquisition_check.named_limits():
            print(
                f"  {region:<10} mean grey {limits.mean_min:.1f}-{limits.mean_max:.1f}, "
                f"pixel std >= {limits.std_min:.2f}"
            )
    print(f"wrote {run_dir / THRESHOLDS_FILE} and {out_dir}/")
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
