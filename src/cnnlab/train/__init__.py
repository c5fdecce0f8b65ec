"""The training engine: configs, the loop, checkpoints, resume, data parallelism."""

from cnnlab.train.config import RunConfig, load_config, preset_names
from cnnlab.train.run import Run, load_run, train

__all__ = ["Run", "RunConfig", "load_config", "load_run", "preset_names", "train"]
