"""``cnnlab visualize``: look inside a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli import options
from cnnlab.visualize.methods import REGISTRY, chosen, drawn


def add(commands: options.Commands) -> None:
    """The ``visualize`` command (its methods from the registry, which loads without torch)."""
    visualize = commands.add_parser(
        "visualize",
        help="look inside a trained run: activations, filters, Grad-CAM, saliency",
        description="Write activation grids, filter images (gradient ascent from a blank input, "
        "all filters of a layer in one batch), the heatmaps of the explanation methods ("
        + ", ".join(m.title for m in chosen(drawn()))
        + ") and their raw arrays into --out; --score ranks the explanation methods by "
        "evidence: localisation against the Lines masks, faithfulness (deletion and insertion "
        "curves, any dataset) and the randomisation check, on the same seeded test images as "
        "cnnlab report --inside, and writes its table (scores.json) and figure (scores.png). "
        "It runs on the CPU (no --device: the pictures' code keeps its tensors there).",
    )
    visualize.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    visualize.add_argument(
        "--images",
        type=Path,
        metavar="FILE|DIR|NPZ",
        help="images to explain (default: 8 test images of the run's data)",
    )
    visualize.add_argument(
        "--layer",
        dest="layers",
        action="append",
        metavar="NAME",
        help="a layer, e.g. features.conv1 (repeatable; default: conv/pool)",
    )
    visualize.add_argument("--head", help="a head of a multi-head model (default: every head)")
    visualize.add_argument(
        "--class",
        dest="target",
        metavar="K",
        help="class index or name to explain (default: the predicted one)",
    )
    options.out(visualize, "DIR", "output folder (RUN_DIR/visualize)")
    visualize.add_argument(
        "--score",
        action="store_true",
        help="the scoreboard of explanation methods (masks, faithfulness, randomisation) on "
        "seeded test images, as cnnlab report --inside: scores.json and its figure scores.png",
    )
    visualize.add_argument(
        "--method",
        dest="methods",
        action="append",
        choices=list(REGISTRY),
        metavar="NAME",
        help="an explanation method to draw and score (repeatable; default: those with a "
        f"picture, and the scored ones with --score): {', '.join(REGISTRY)}",
    )
    options.json_file(
        visualize,
        "write the summary (paths, layers, targets, scores) as JSON to FILE (-: on stdout, and "
        "nothing else there)",
    )
    options.quiet(visualize)
    options.trust_code(visualize)
    visualize.set_defaults(handler=_visualize)


def _visualize(args: argparse.Namespace) -> int:
    from cnnlab.predict import read_images
    from cnnlab.report.inside_view import scoreboard_figure
    from cnnlab.runfolder import RunFolder
    from cnnlab.training import load_run
    from cnnlab.visualize import format_scoreboard, visualize_run

    images = None
    if args.images is not None:
        images, _ = read_images(args.images, load_run(args.run_dir).preprocess)
    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    out = args.out or RunFolder(args.run_dir).visualize
    drawn = visualize_run(
        args.run_dir,
        out,
        images=images,
        layers=args.layers,
        head=args.head,
        target_class=target,
        score=args.score,
        methods=args.methods,
        scoreboard_figure=scoreboard_figure,
        log=options.progress_log(args),
    )
    lines = [f"pictures and arrays written to {out}"]
    if drawn.scores:
        names = [Path(str(drawn.scores_json)).name]
        names += [f"its figure {Path(drawn.scores_png).name}"] if drawn.scores_png else []
        lines.append(f"scoreboard written to {out}: {' and '.join(names)}")
        lines.append(format_scoreboard(drawn.scores))
    options.report(args, drawn.to_dict(), lines)
    return 0
