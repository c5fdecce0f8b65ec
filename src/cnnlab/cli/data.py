"""``cnnlab data lines | mnist | check``: generate, load and check datasets."""

from __future__ import annotations

import argparse
import json
import time

from cnnlab.cli import options
from cnnlab.errors import CnnlabError

MNIST_DIR = "folder of the MNIST IDX files ($CNNLAB_MNIST_DIR; else downloaded and checked)"


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add(commands: options.Commands) -> None:
    """The ``data`` command and its three datasets' subcommands."""
    data = commands.add_parser("data", help="generate or load datasets")
    kinds = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    _add_lines(kinds)
    _add_mnist(kinds)
    _add_check(kinds)


def _add_lines(kinds: options.Commands) -> None:
    lines = kinds.add_parser(
        "lines",
        help="generate the Lines dataset (one straight line on black, 96 classes by default)",
        description="Generate the Lines dataset: DIR/lines.npz, DIR/card.json and, with --png, "
        "DIR/preview.png and an ImageFolder tree DIR/png/{train,test}/<class>/.",
    )
    options.out(lines, "DIR", "output folder", required=True)
    lines.add_argument("--seed", type=int, default=0, help="fixes positions, noise and the split")
    lines.add_argument("--per-class", type=int, default=1000, help="images per class (1000)")
    lines.add_argument("--test-fraction", type=float, default=0.4, help="share for test (0.4)")
    lines.add_argument("--png", action="store_true", help="also write PNG files and a preview")
    lines.add_argument("--image-size", type=int, default=28, help="image side in px (28)")
    lines.add_argument("--lengths", type=options.int_list, default=(7, 15), metavar="L,L")
    lines.add_argument("--widths", type=options.int_list, default=(1, 3), metavar="W,W")
    lines.add_argument("--angle-step", type=int, default=15, help="degrees between angles (15)")
    lines.add_argument(
        "--colors",
        type=_names,
        default=("red", "blue"),
        metavar="C,C",
        help="colour names or #rrggbb (red,blue)",
    )
    lines.add_argument(
        "--variant",
        default="default",
        help="a named rendering: default (anti-aliased lines anywhere in the frame), centred "
        "(generator 1.0: 49 whole-pixel shifts, every test image a copy of a training image), "
        "sharp, jpeg (sharp lines stored as JPEG 95, as the study), noisy; options below "
        "override it",
    )
    lines.add_argument(
        "--position",
        choices=("anywhere", "centred"),
        help="anywhere: the line's centre at a random sub-pixel point wherever it fits; "
        "centred: within --max-shift whole pixels of the centre",
    )
    lines.add_argument(
        "--render",
        choices=("antialias", "sharp"),
        help="antialias: edge pixels shaded by coverage; sharp: pixels whose centre is on the line",
    )
    lines.add_argument("--max-shift", type=int, help="centred only: centre shift, px (3)")
    lines.add_argument("--noise", type=float, help="Gaussian noise std, 0..255 (0)")
    lines.add_argument("--jpeg-quality", type=int, help="store as JPEG at this quality, 1..100")
    lines.set_defaults(handler=_lines)


def _lines(args: argparse.Namespace) -> int:
    from cnnlab.data import GENERATOR_VERSION, generate_lines, lines_config, save_lines

    chosen = {
        name: getattr(args, name)
        for name in ("position", "render", "max_shift", "noise", "jpeg_quality")
        if getattr(args, name) is not None
    }
    config = lines_config(
        args.variant,
        image_size=args.image_size,
        lengths=args.lengths,
        widths=args.widths,
        angle_step=args.angle_step,
        colors=args.colors,
        per_class=args.per_class,
        test_fraction=args.test_fraction,
        seed=args.seed,
        **chosen,
    )
    start = time.perf_counter()
    data = generate_lines(config)
    generated = time.perf_counter() - start
    paths = save_lines(data, args.out, png=args.png)
    train = int((data.arrays["split"] == "train").sum())
    distinct = json.loads(paths["card"].read_text())["distinct"]
    print(
        f"Lines (generator {GENERATOR_VERSION}, {config.position}, {config.render}): "
        f"{len(data)} images ({train} train / {len(data) - train} test), "
        f"{config.num_classes} classes, seed {config.seed}; generated in {generated:.2f} s\n"
        f"  distinct pictures: {distinct['train']:,d} train, {distinct['test']:,d} test; "
        f"{distinct['test_in_train']:,d} test images equal a training image"
    )
    for kind, path in paths.items():
        print(f"  {kind:8s} {path}")
    return 0


def _add_mnist(kinds: options.Commands) -> None:
    mnist = kinds.add_parser(
        "mnist",
        help="load and check MNIST (or any dataset in its IDX format)",
        description="Read the four IDX files from --mnist-dir or $CNNLAB_MNIST_DIR, or download "
        "them into the cache with checksum checks; print a summary; with --out also write "
        "DIR/mnist.npz, DIR/card.json and DIR/preview.png (and with --png an image-folder "
        "tree DIR/png/{train,test}/<digit>/).",
    )
    options.mnist_dir(mnist, MNIST_DIR, old="--dir")
    options.mnist_split(mnist, "study: all 70,000 pooled, 60/40 stratified; official: 60k/10k")
    mnist.add_argument("--seed", type=int, default=0, help="fixes the study split")
    mnist.add_argument("--test-fraction", type=float, default=0.4, help="share for test (0.4)")
    options.out(mnist, "DIR", "also export the dataset here")
    mnist.add_argument(
        "--png", action="store_true", help="with --out, also write every image as a PNG file"
    )
    mnist.set_defaults(handler=_mnist)


def _mnist(args: argparse.Namespace) -> int:
    from cnnlab.data import load_mnist
    from cnnlab.data.exports import export_dataset

    if args.png and not args.out:
        raise CnnlabError("--png writes into the --out folder; give --out DIR")
    start = time.perf_counter()
    dataset = load_mnist(
        args.mnist_dir, split=args.mnist_split, seed=args.seed, test_fraction=args.test_fraction
    )
    print(f"{dataset.summary()}\n  loaded in {time.perf_counter() - start:.2f} s")
    source = dataset.provenance
    print(f"  source: {source.get('source', '?')} {source.get('path', '')}")
    if args.out:
        for kind, path in export_dataset(dataset, args.out, png=args.png).items():
            print(f"  {kind:8s} {path}")
    return 0


def _add_check(kinds: options.Commands) -> None:
    check = kinds.add_parser(
        "check",
        help="look for duplicate images, test images copied from training, conflicting labels",
        description="Check a dataset: exact duplicates (by pixels) within and across its train "
        "and test splits, identical images with different labels, class counts per split. "
        "The same check runs at the start of every training and is kept in the run's record.",
    )
    check.add_argument(
        "source",
        metavar="DATASET",
        help="mnist, lines, a lines.npz file or its folder, a folder of IDX files, a folder "
        "of class folders, a CSV manifest, an .npz of images and labels, a CIFAR binary folder",
    )
    options.mnist_dir(check, "MNIST: folder of the IDX files", old="--dir")
    check.add_argument(
        "--image-size", type=int, metavar="PX", help="files: resize to PX x PX (data.image_size)"
    )
    check.add_argument(
        "--channels", type=int, choices=(1, 3), help="files: grey or RGB (data.channels)"
    )
    check.add_argument(
        "--test-fraction", type=float, default=0.2, help="files without a split (0.2)"
    )
    options.mnist_split(check)
    check.add_argument("--seed", type=int, default=0, help="fixes generated data and splits")
    options.json_file(check, "also write the result here")
    check.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when test images copy training images or labels conflict",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from cnnlab.data import check_dataset, check_summary_lines, load_dataset, overlap_warning
    from cnnlab.fileio import write_json

    dataset = load_dataset(
        args.source,
        seed=args.seed,
        mnist_dir=args.mnist_dir,
        mnist_split=args.mnist_split,
        image_size=args.image_size,
        channels=args.channels,
        test_fraction=args.test_fraction,
    )
    result = check_dataset(dataset)
    print(f"{dataset.name} ({args.source})")
    print("\n".join(check_summary_lines(result)))
    warning = overlap_warning(result)
    if warning:
        print(warning)
    if args.json:
        write_json(args.json, {"dataset": str(args.source), **result})
        print(f"  written: {args.json}")
    return 1 if args.strict and warning else 0
