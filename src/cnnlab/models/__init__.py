"""Model families, built by name from a registry."""

from cnnlab.models import convnets, multihead, resnet  # noqa: F401  (register the families)
from cnnlab.models.registry import (
    create_model,
    describe,
    model_factory,
    model_names,
    model_options,
    parameter_count,
    register_model,
)

__all__ = [
    "create_model",
    "describe",
    "model_factory",
    "model_names",
    "model_options",
    "parameter_count",
    "register_model",
]
