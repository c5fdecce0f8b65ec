"""``train.ema``: the moving average's BatchNorm statistics are recomputed before each
evaluation, so the averaged weights are measured as themselves (averaged running statistics do
not fit averaged weights: on this run they cost two points)."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.models.registry import build_model
from cnnlab.training.distributed import Distributed
from cnnlab.training.engine import Engine, Position
from cnnlab.training.progress import Progress
from cnnlab.training.recipe import recipe_config, resolve_model
from cnnlab.training.run import prepare_dataset


def test_the_moving_average_scores_as_well_as_the_weights_it_follows(mnist_dir: Path) -> None:
    sets = [f"data.mnist_dir={mnist_dir}", "data.train_limit=6000", "data.test_limit=1000"]
    config = recipe_config("mnist", [*sets, "train.epochs=3", "train.ema=0.95"])
    torch.manual_seed(0)
    data = prepare_dataset(config)
    config = resolve_model(config, data.channels, data.num_classes, data.image_size)
    model = build_model(
        config.model, data.channels, data.num_classes, data.image_size, data.factor_levels
    )
    engine = Engine(config, data, model, torch.device("cpu"), Distributed(), None, Progress(False))
    engine.fit(Position())
    images, targets = engine.evaluated["test"]

    def accuracy() -> float:
        sums = engine.evaluate(images, targets)
        return float(sums[1] / sums[2])

    averaged = accuracy()
    engine.ema, ema = None, engine.ema
    trained = accuracy()  # the weights the average follows (the rate ends near zero)
    engine.ema = ema
    assert trained > 0.9 and abs(averaged - trained) < 0.01, (averaged, trained)
