"""Building-block layers (`GradientReversal`, `MaxOverTimeConv1D`, `WordFeatures`)."""

from ktransfer.layers.gradient_reversal import GradientReversal
from ktransfer.layers.max_over_time import MaxOverTimeConv1D
from ktransfer.layers.word_features import WordFeatures
from ktransfer.layers.word_features import WordFeaturesPreprocessor

__all__ = [
    "GradientReversal",
    "MaxOverTimeConv1D",
    "WordFeatures",
    "WordFeaturesPreprocessor",
]
