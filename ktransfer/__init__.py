"""ktransfer: transfer learning for NLP as Keras building blocks.

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
```
"""

from ktransfer import _keras  # noqa: F401  (Keras on the TensorFlow backend)
from ktransfer import assets
from ktransfer import data
from ktransfer import distribute
from ktransfer import encoders
from ktransfer import export
from ktransfer import heads
from ktransfer.predict import predict

__version__ = "0.1.0"

__all__ = [
    "assets",
    "data",
    "distribute",
    "encoders",
    "export",
    "heads",
    "predict",
    "__version__",
]
