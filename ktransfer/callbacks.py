"""Keras callbacks of ktransfer's transfer methods, in one namespace.

- `GradualUnfreezing` (ULMFiT): `ktransfer.methods.unfreezing`.
- `GradientReversalSchedule`, `AlignmentWeightSchedule` (domain adaptation
  ramps): `ktransfer.methods.adapt`.
"""

from ktransfer.methods.adapt import AlignmentWeightSchedule
from ktransfer.methods.adapt import GradientReversalSchedule
from ktransfer.methods.unfreezing import GradualUnfreezing

__all__ = ["AlignmentWeightSchedule", "GradientReversalSchedule", "GradualUnfreezing"]
