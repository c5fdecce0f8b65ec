"""``cnnlab export``: a run's model as ONNX or ``.pt2``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cnnlab.cli import options

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4
CHECK_IMAGES = 512
"""``cnnlab.export``'s formats, tolerance and default check, read here without loading torch
(tests/test_cli_help.py checks they agree)."""


def add(commands: options.Commands) -> None:
    """The ``export`` command."""
    export = commands.add_parser(
        "export",
        help="the run's model as ONNX (checked in onnxruntime) or torch.export .pt2",
        description="Write RUN's model with its preprocessing inside (uint8 images in, logits "
        "or one output per head out) to RUN/export/model.<format> with a card beside it "
        "(model.<format>.json: input, preprocessing, outputs, the check), after checking it on "
        f"up to --check-images of the run's test images: onnxruntime (or torch.export.load) "
        f"against PyTorch, every output within {TOLERANCE:g} and every prediction the same; a "
        "file that fails is not kept. It runs on the CPU (no --device). ONNX needs pip install "
        "'cnnlab[export]'.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN")
    export.add_argument("--format", choices=FORMATS, default="onnx", help="(onnx)")
    options.out(export, "FILE", "(RUN/export/model.<format>)")
    export.add_argument(
        "--check-images", type=int, default=CHECK_IMAGES, metavar="N", help=f"({CHECK_IMAGES})"
    )
    options.json_file(
        export,
        "write the export's record (path, card, outputs, images, max_difference, "
        "same_predictions, format) as JSON to FILE (-: on stdout, and nothing else there)",
    )
    options.quiet(export)
    options.trust_code(export)
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from cnnlab.export import export_run

    result = export_run(args.run_dir, args.format, args.out, args.check_images)
    checker = "onnxruntime" if args.format == "onnx" else "torch.export.load"
    record = {**dataclasses.asdict(result), "format": args.format, "checked_in": checker}
    line = (
        f"{result.path}: outputs {', '.join(result.outputs)}; checked in {checker} on "
        f"{result.images} test images: largest difference {result.max_difference:.2g}, same "
        "predictions"
    )
    options.report(args, record, [line, f"card: {result.card}"])
    return 0
