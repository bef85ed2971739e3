"""``tfad datasets``: generate the synthetic vial line, describe data sets, pack and verify shards."""

from __future__ import annotations

import argparse
import json
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad datasets {synth-vials,info,pack,verify}``."""
    parser = subparsers.add_parser(
        "datasets", help="generate demo data, describe a data set, pack/verify TFRecord shards"
    )
    commands = parser.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    synth = commands.add_parser(
        "synth-vials",
        help="write the synthetic vial-line data set (line layout)",
        description="Render a synthetic blow-fill-seal vial line: train (good), calib and test "
        "(good + defective with masks and labels.csv), in the line layout.",
    )
    synth.add_argument("out", metavar="OUT", help="output folder (created; must be empty unless --overwrite)")
    synth.add_argument("--products", type=int, default=60, help="train products (default 60)")
    synth.add_argument(
        "--eval-products",
        type=int,
        default=None,
        help="calib and test products each (default max(4, products/3))",
    )
    synth.add_argument("--runs", type=int, default=1, help="acquisitions (runs) of every product (default 1)")
    synth.add_argument("--frames", type=int, default=3, help="frames per acquisition (default 3)")
    synth.add_argument("--vials", type=int, default=5, help="vials per strip (default 5)")
    synth.add_argument(
        "--defect-rate", type=float, default=0.3, help="fraction of calib/test products with a defect (0.3)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--size", type=int, default=256, help="patch size in pixels (default 256)")
    synth.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet of the test split")
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    synth.set_defaults(func=_synth_vials)

    info = commands.add_parser(
        "info",
        help="layout, counts per split/class/region, products/runs, corrupt files",
        description="Describe a data set: detected layout, per split the counts per class and region, "
        "products and runs, and (unless --no-verify) the files that cannot be decoded.",
    )
    info.add_argument("root", metavar="ROOT", help="data set folder")
    info.add_argument("--layout", choices=("auto", "mvtec", "line"), default="auto")
    info.add_argument("--split", action="append", help="only this split (repeatable; default all)")
    info.add_argument("--no-verify", action="store_true", help="do not decode every file (faster)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)

    pack = commands.add_parser(
        "pack",
        help="pack one split into checksummed TFRecord shards + index.json",
        description="Decode one split once and write it as TFRecord shards (lossless PNG, masks, ROI, "
        "labels and metadata) with an index.json of record counts, sizes and SHA-256 (docs/data.md, "
        '"Packed shards (TFRecords)").',
    )
    pack.add_argument("root", metavar="ROOT", help="data set folder")
    pack.add_argument("out", metavar="OUT", help="output folder (created; must be empty unless --overwrite)")
    pack.add_argument("--split", required=True, help="split to pack (e.g. train)")
    pack.add_argument("--layout", choices=("auto", "mvtec", "line"), default="auto")
    pack.add_argument(
        "--image-size", type=int, default=None, help="resize to NxN (default: store images as decoded)"
    )
    pack.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 grey (default) or 3 RGB")
    pack.add_argument("--shard-size", type=int, default=1024, help="images per shard (default 1024)")
    pack.add_argument(
        "--on-corrupt",
        choices=("skip", "fail"),
        default="skip",
        help="skip and list corrupt files (default) or stop naming the first one",
    )
    pack.add_argument(
        "--shuffle-seed",
        type=int,
        default=None,
        help="write the images in a permutation fixed by this seed (recommended for training sets)",
    )
    pack.add_argument("--overwrite", action="store_true", help="replace an earlier pack in OUT")
    pack.set_defaults(func=_pack)

    verify = commands.add_parser(
        "verify",
        help="check a packed folder: index, sizes, SHA-256, record counts",
        description="Check OUT/index.json, every shard's existence, byte size and SHA-256, and that every "
        "shard parses with the recorded number of records. Exit code 2 naming the shard when not.",
    )
    verify.add_argument("out", metavar="OUT", help="packed folder")
    verify.add_argument("--decode", action="store_true", help="also decode every image, mask and ROI")
    verify.set_defaults(func=_verify)


def _synth_vials(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tfad.cli import CLIError
    from tfad.data.contact_sheet import make_contact_sheet
    from tfad.data.errors import DataError
    from tfad.data.synth_vials import generate_synth_vials

    bar = tqdm(total=None, desc="synth-vials", unit="acq")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = generate_synth_vials(
            args.out,
            n_products=args.products,
            n_runs=args.runs,
            frames=args.frames,
            defect_rate=args.defect_rate,
            seed=args.seed,
            image_size=args.size,
            n_eval_products=args.eval_products,
            vials=args.vials,
            progress=progress,
            overwrite=args.overwrite,
        )
    except (DataError, ValueError) as err:
        raise CLIError(str(err)) from err
    finally:
        bar.close()
    for split, count in summary.patches.items():
        print(
            f"{split:6s} {summary.products[split]:5d} products "
            f"({summary.defective_products[split]} defective), "
            f"{count:7d} patches ({summary.defective_patches[split]} defective)"
        )
    total = sum(summary.patches.values())
    print(f"wrote {total} patches to {os.path.abspath(args.out)} in {summary.seconds:.1f} s")
    if args.contact_sheet:
        print(f"contact sheet: {make_contact_sheet(args.out, args.contact_sheet)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from tfad.cli import CLIError
    from tfad.data.errors import DataError
    from tfad.data.layouts import detect_layout, list_splits, read_dataset, summarize

    try:
        layout = detect_layout(args.root) if args.layout == "auto" else args.layout
        splits = args.split or list_splits(args.root, layout)
        report: dict = {"root": os.path.abspath(args.root), "layout": layout, "splits": {}}
        for split in splits:
            records = read_dataset(args.root, split, layout)
            entry = summarize(records)
            if not args.no_verify:
                from tfad.data.corrupt import scan_corrupt_files

                counter = scan_corrupt_files(records, channels=1, progress=not args.json)
                entry["corrupt_files"] = counter.reasons
            report["splits"][split] = entry
    except DataError as err:
        raise CLIError(str(err)) from err
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['root']}: layout {layout}")
    for split, entry in report["splits"].items():
        print(
            f"  {split}: {entry['images']} images, {entry['products']} products, {entry['runs']} runs, "
            f"{entry['with_mask']} with mask, {entry['with_roi']} with ROI"
        )
        print(f"    labels : {entry['labels']}")
        print(f"    classes: {entry['classes']}")
        print(f"    regions: {entry['regions']}")
        if "corrupt_files" in entry:
            bad = entry["corrupt_files"]
            print(f"    corrupt files: {len(bad)}")
            for path, reason in sorted(bad.items()):
                print(f"      {path}: {reason}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from tfad.cli import CLIError
    from tfad.data.errors import DataError
    from tfad.data.layouts import detect_layout, read_dataset
    from tfad.data.packing import pack_dataset

    try:
        layout = detect_layout(args.root) if args.layout == "auto" else args.layout
        records = read_dataset(args.root, args.split, layout)
        result = pack_dataset(
            records,
            args.out,
            image_size=args.image_size,
            channels=args.channels,
            shard_size=args.shard_size,
            on_corrupt=args.on_corrupt,
            overwrite=args.overwrite,
            split=args.split,
            source_root=args.root,
            layout=layout,
            shuffle_seed=args.shuffle_seed,
        )
    except (DataError, ValueError) as err:
        raise CLIError(str(err)) from err
    size = f"{args.image_size}x{args.image_size}" if args.image_size else "as decoded"
    print(
        f"packed {result.records} of {result.source_records} images of {os.path.abspath(args.root)} "
        f"split {args.split} ({size}, {args.channels} channel(s)) into {len(result.shards)} shard(s), "
        f"{result.bytes / 1e6:.1f} MB, in {result.out_dir} in {result.seconds:.1f} s"
    )
    if result.skipped:
        print(f"skipped {len(result.skipped)} corrupt file(s) (listed in index.json):")
        for path, reason in result.skipped.items():
            print(f"  {path}: {reason}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from tfad.cli import CLIError
    from tfad.data.shards import ShardError, verify_shards

    try:
        result = verify_shards(args.out, decode=args.decode, progress=True)
    except ShardError as err:
        raise CLIError(str(err)) from err
    print(
        f"{result.out_dir}: {result.shards} shard(s), {result.records} records, {result.bytes / 1e6:.1f} MB: "
        f"OK ({', '.join(result.checks)})"
    )
    return 0
