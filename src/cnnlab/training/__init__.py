"""The training engine: configs, the loop, checkpoints, resume, data parallelism."""

from cnnlab.training.config import RunConfig, load_config, preset_names
from cnnlab.training.run import Run, load_run, train

__all__ = ["Run", "RunConfig", "load_config", "load_run", "preset_names", "train"]
