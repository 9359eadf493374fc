"""ktransfer: transfer learning for NLP as Keras building blocks.

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
```
"""

from ktransfer import _keras  # noqa: F401  (Keras on the TensorFlow backend)
from ktransfer import adapt
from ktransfer import assets
from ktransfer import callbacks
from ktransfer import config
from ktransfer import data
from ktransfer import distill
from ktransfer import distribute
from ktransfer import encoders
from ktransfer import export
from ktransfer import fewshot
from ktransfer import heads
from ktransfer import layers
from ktransfer import metrics
from ktransfer import models
from ktransfer import multitask
from ktransfer import optimizers
from ktransfer import schedules
from ktransfer import strategies
from ktransfer import transfer
from ktransfer.predict import predict
from ktransfer.train import train
from ktransfer.word_vectors import WordVectors

__version__ = "0.1.0"

__all__ = [
    "WordVectors",
    "__version__",
    "adapt",
    "assets",
    "callbacks",
    "config",
    "data",
    "distill",
    "distribute",
    "encoders",
    "export",
    "fewshot",
    "heads",
    "layers",
    "metrics",
    "models",
    "multitask",
    "optimizers",
    "predict",
    "schedules",
    "strategies",
    "train",
    "transfer",
]
