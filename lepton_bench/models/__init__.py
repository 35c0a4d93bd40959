"""Models: per-task stems -> a shared (or not) trunk -> per-task heads.

This package knows tensors only, never files or datasets: ``train`` hands it a
``TaskIO`` per task that says what goes in and what comes out.
"""

from . import experts, same_input  # noqa: F401  (registers the expert mixtures and same-input architectures)
from .architectures import ARCHITECTURES, MultiTaskModel, TaskIO, build_model

__all__ = ["ARCHITECTURES", "MultiTaskModel", "TaskIO", "build_model"]
