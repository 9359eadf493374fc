"""Building-block layers (`GradientReversal`)."""

from ktransfer.layers.gradient_reversal import GradientReversal

__all__ = [
    "GradientReversal",
]
