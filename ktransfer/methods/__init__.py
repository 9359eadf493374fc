"""Transfer methods, in one place.

| method | module | entry points |
|---|---|---|
| feature extraction (encoder run once, cached) | `feature_extraction` | `cache_features`, `load_cached_features`, `attach_head` |
| checkpoint averaging (Free Lunch, SWA) | `averaging` | `CheckpointAveraging` |
| gradual unfreezing (ULMFiT) | `unfreezing` | `GradualUnfreezing` (over `encoder.layer_groups()`) |
| layer-wise learning rates | `ktransfer.optimizers` | `layerwise`, `LayerwiseOptimizer` |
| LoRA | `lora` | `BertEncoder.enable_lora`, `merge_lora` |
| fixed-weight transfer between tasks | `weight_transfer` | `from_model`, `copy_encoder`, `find_encoder`, `find_head` |
| domain adaptation | `adapt` | `DANN`, `CORAL`, `MMD` |
| multi-task learning | `multitask` | `MultiTaskModel` |
| few-shot learning | `fewshot` | `EpisodeSampler`, `PrototypicalNetwork`, `ContrastiveFinetuner` |
| distillation | `distill` | `soft_targets`, `Distiller` |

`kt.strategies` (the old name of feature extraction and LoRA merging) is
this package: the word "strategy" also means a `tf.distribute` strategy
(`kt.distribute.get_strategy`) and a mixing rule (`kt.data.mix(strategy=)`).
"""

from ktransfer.methods import adapt
from ktransfer.methods import averaging
from ktransfer.methods import distill
from ktransfer.methods import feature_extraction
from ktransfer.methods import fewshot
from ktransfer.methods import lora
from ktransfer.methods import multitask
from ktransfer.methods import unfreezing
from ktransfer.methods import weight_transfer
from ktransfer.methods.averaging import CheckpointAveraging
from ktransfer.methods.feature_extraction import attach_head
from ktransfer.methods.feature_extraction import cache_features
from ktransfer.methods.feature_extraction import load_cached_features
from ktransfer.methods.lora import merge_lora
from ktransfer.methods.unfreezing import GradualUnfreezing
from ktransfer.methods.weight_transfer import copy_encoder
from ktransfer.methods.weight_transfer import find_encoder
from ktransfer.methods.weight_transfer import find_head
from ktransfer.methods.weight_transfer import from_model

__all__ = [
    "CheckpointAveraging",
    "GradualUnfreezing",
    "adapt",
    "averaging",
    "attach_head",
    "cache_features",
    "copy_encoder",
    "distill",
    "feature_extraction",
    "fewshot",
    "find_encoder",
    "find_head",
    "from_model",
    "load_cached_features",
    "lora",
    "merge_lora",
    "multitask",
    "unfreezing",
    "weight_transfer",
]
