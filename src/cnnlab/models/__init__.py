"""Model families, built by name from a registry."""

from cnnlab.models import convnets  # noqa: F401  (registers part1 and convnet)
from cnnlab.models.registry import (
    create_model,
    describe,
    model_names,
    model_options,
    parameter_count,
    register_model,
)

__all__ = [
    "create_model",
    "describe",
    "model_names",
    "model_options",
    "parameter_count",
    "register_model",
]
