"""Keras callbacks of ktransfer's transfer methods, in one namespace.

- `CheckpointAveraging` (the mean of evenly spaced snapshots of one run:
  Free Lunch, SWA): `ktransfer.methods.averaging`.
- `GradualUnfreezing` (ULMFiT): `ktransfer.methods.unfreezing`.
- `GradientReversalSchedule`, `AlignmentWeightSchedule` (domain adaptation
  ramps): `ktransfer.methods.adapt`.
"""

from ktransfer.methods.adapt import AlignmentWeightSchedule
from ktransfer.methods.adapt import GradientReversalSchedule
from ktransfer.methods.averaging import CheckpointAveraging
from ktransfer.methods.unfreezing import GradualUnfreezing

__all__ = [
    "AlignmentWeightSchedule",
    "CheckpointAveraging",
    "GradientReversalSchedule",
    "GradualUnfreezing",
]
