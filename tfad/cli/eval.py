"""``tfad eval MODEL``: metrics, decisions at the calibrated thresholds, and plots on a labelled split."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad eval``."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on a labelled split (report.json, summary.txt, plots)",
        description="Score a labelled split with a run directory or an exported SavedModel and write "
        "report.json, summary.txt and plots/ (ROC, score histograms per class and region, heatmap "
        "examples, pixel ROC/PRO): image AUROC, pixel AUROC, AUPRO (FPR <= 0.3), F1-max, and at the "
        "calibrated thresholds the accuracy and true-accept/true-reject rates per region, product and run. "
        "Positive class = defective.",
    )
    parser.add_argument("model", metavar="MODEL", help="run directory, or savedmodels/<name>[/<version>]")
    parser.add_argument("--data", required=True, help="data set folder (MVTec or line layout)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--layout", choices=("auto", "mvtec", "line"), default="auto")
    parser.add_argument("--out", help="report folder (default: <run>/eval/<split> or ./eval_<name>_<split>)")
    parser.add_argument(
        "--k", type=int, help="run acceptance: accept when k of n runs pass (default: model's)"
    )
    parser.add_argument("--n", type=int, help="run acceptance window n (default: model's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--on-corrupt",
        choices=("skip", "fail"),
        default="skip",
        help="unreadable images: leave out and list in the report (skip) or stop (fail)",
    )
    parser.add_argument(
        "--shift",
        metavar="KINDS",
        help="also score the split under domain shift and report each metric's drop: comma list of "
        "affine, scale, brightness, noise, or all (docs/evaluation.md, 'Domain shift'); written to "
        "OUT/shift/",
    )
    parser.add_argument(
        "--shift-strengths",
        default="0.25,0.5,1",
        help="strengths in [0, 1] of --shift (1 = the stated maximum of each kind; default: 0.25,0.5,1)",
    )
    parser.add_argument("--shift-seed", type=int, default=0, help="seed of the shift draws (default: 0)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    import json
    import shutil
    from pathlib import Path

    from tfad.cli import CLIError
    from tfad.data.errors import DataError
    from tfad.data.layouts import read_dataset
    from tfad.evaluation.report import format_summary, write_report
    from tfad.evaluation.scorer import load_scorer, save_table, score_records

    scorer = load_scorer(args.model)
    if scorer.thresholds is None:
        raise CLIError(f"{scorer.describe()} has no thresholds: run `tfad calibrate` (and export again)")
    try:
        records = read_dataset(args.data, args.split, args.layout)
    except DataError as err:
        raise CLIError(str(err)) from err
    if args.out:
        out = Path(args.out)
    elif scorer.kind == "run":
        out = scorer.path / "eval" / args.split
    else:
        out = Path(f"eval_{scorer.name}_v{scorer.info.get('version')}_{args.split}")
    k, n = args.k or scorer.run_k, args.n or scorer.run_n
    if not 1 <= k <= n:
        raise CLIError(f"run acceptance needs 1 <= k <= n, got {k} of {n}")
    shifts = []
    if args.shift is not None:
        from tfad.data.shift import parse_shifts

        try:
            shifts = parse_shifts(args.shift, args.shift_strengths)
        except ValueError as err:
            raise CLIError(f"--shift: {err}") from err
    scratch = out / ".scratch"
    table, corrupt = score_records(
        scorer, records, scratch, args.batch_size, args.on_corrupt, progress=not args.no_progress
    )
    try:
        report = write_report(
            table, scorer.thresholds, str(out), k=k, n=n, plots=not args.no_plots, gate=scorer.gate
        )
    except ValueError as err:
        raise CLIError(f"evaluation failed: {err}") from err
    report["model"] = {
        "kind": scorer.kind,
        "name": scorer.name,
        "path": str(scorer.path),
        "version": scorer.info.get("version"),
        "family": scorer.info.get("model_family"),
        "preset": scorer.info.get("preset"),
        "score": (scorer.info.get("score") or {}).get("name"),
        **({"classes": scorer.info["classes"]} if scorer.info.get("classes") else {}),
        "training_data_fingerprint": scorer.info.get("training_data_fingerprint")
        or scorer.info.get("training_data", {}).get("fingerprint"),
    }
    report["data"] = {
        "root": str(Path(args.data).resolve()),
        "split": args.split,
        "images": len(records),
        "unreadable": corrupt,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    save_table(table, out)
    shutil.rmtree(scratch, ignore_errors=True)
    print(format_summary(report))
    if shifts:
        from tfad.evaluation.shift import evaluate_shifts, format_shift_table, write_shift_results

        rows = evaluate_shifts(
            scorer,
            records,
            scorer.thresholds,
            shifts,
            out / "shift" / ".scratch",
            seed=args.shift_seed,
            batch_size=args.batch_size,
            on_corrupt=args.on_corrupt,
            progress=not args.no_progress,
            k=k,
            n=n,
            baseline=report,
        )
        write_shift_results(rows, out / "shift", args.shift_seed, scorer.name)
        print(f"domain shift (seed {args.shift_seed}; thresholds as calibrated, unshifted):")
        print(format_shift_table(rows))
        print(f"shift: {out / 'shift' / 'shift.json'}   plot: {out / 'shift' / 'plots' / 'shift_auroc.png'}")
    if corrupt:
        print(f"{len(corrupt)} unreadable image(s) left out (listed in report.json under data.unreadable)")
    print(f"report: {out / 'report.json'}   summary: {out / 'summary.txt'}   plots: {out / 'plots'}/")
    return 0
