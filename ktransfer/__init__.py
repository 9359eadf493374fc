"""ktransfer: transfer learning for NLP as Keras building blocks.

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
```

The package, by role:

- building blocks: `encoders`, `heads`, `layers`, `losses`, `metrics`,
  `optimizers`, `schedules`, `callbacks`;
- `data`: readers and the tf.data pipeline (tokenising, length buckets);
- `vectors`: pretrained word-vector files, one module per format;
- `tasks`: models that own their preprocessor (raw strings in);
- `methods`: the transfer methods (feature extraction, unfreezing, LoRA,
  weight transfer, domain adaptation, multi-task, few-shot, distillation);
- `export`, `distribute`, `assets`, `convert` (checkpoint converters), `utils`;
- `app`: the command-line application (`ktransfer train ...`), apart from
  the library.

Old module paths (`ktransfer.adapt`, `ktransfer.strategies`,
`ktransfer.models`, `ktransfer.train`, ...) are kept as aliases of their new
homes, so code written against them keeps working.
"""

import importlib as _importlib
import sys as _sys

from ktransfer import _keras  # noqa: F401  (Keras on the TensorFlow backend)
from ktransfer import assets
from ktransfer import callbacks
from ktransfer import convert
from ktransfer import data
from ktransfer import distribute
from ktransfer import encoders
from ktransfer import export
from ktransfer import heads
from ktransfer import layers
from ktransfer import losses
from ktransfer import methods
from ktransfer import metrics
from ktransfer import optimizers
from ktransfer import schedules
from ktransfer import tasks
from ktransfer import vectors
from ktransfer.app import config
from ktransfer.app.train import train
from ktransfer.methods import adapt
from ktransfer.methods import distill
from ktransfer.methods import fewshot
from ktransfer.methods import multitask
from ktransfer.methods import weight_transfer as transfer
from ktransfer.predict import predict
from ktransfer.vectors import WordVectors

# `kt.strategies` (feature caching, LoRA merging) is `kt.methods`; `kt.models`
# (TextCNN, BiLSTM, BiLSTMTagger, SiameseEncoder) is `kt.tasks`.
strategies = methods
models = tasks

# Old module paths -> their new homes, so `from ktransfer.strategies import
# cache_features` and `import ktransfer.models.text_cnn` keep working.
MOVED_MODULES = {
    "ktransfer.adapt": "ktransfer.methods.adapt",
    "ktransfer.distill": "ktransfer.methods.distill",
    "ktransfer.multitask": "ktransfer.methods.multitask",
    "ktransfer.fewshot": "ktransfer.methods.fewshot",
    "ktransfer.fewshot.contrastive": "ktransfer.methods.fewshot.contrastive",
    "ktransfer.fewshot.episodes": "ktransfer.methods.fewshot.episodes",
    "ktransfer.fewshot.prototypical": "ktransfer.methods.fewshot.prototypical",
    "ktransfer.transfer": "ktransfer.methods.weight_transfer",
    "ktransfer.strategies": "ktransfer.methods.feature_extraction",
    "ktransfer.word_vectors": "ktransfer.vectors.word_vectors",
    "ktransfer.models": "ktransfer.tasks",
    "ktransfer.models.text_cnn": "ktransfer.tasks.text_cnn",
    "ktransfer.models.bilstm": "ktransfer.tasks.bilstm",
    "ktransfer.models.bilstm_tagger": "ktransfer.tasks.bilstm_tagger",
    "ktransfer.models.siamese": "ktransfer.tasks.siamese",
    "ktransfer.cli": "ktransfer.app.cli",
    "ktransfer.config": "ktransfer.app.config",
    "ktransfer.train": "ktransfer.app.train",
    "ktransfer.report": "ktransfer.app.report",
    "ktransfer.demo": "ktransfer.app.demo",
}
for _old, _new in MOVED_MODULES.items():
    _sys.modules.setdefault(_old, _importlib.import_module(_new))

__version__ = "0.1.0"

__all__ = [
    "MOVED_MODULES",
    "WordVectors",
    "__version__",
    "adapt",
    "assets",
    "callbacks",
    "config",
    "convert",
    "data",
    "distill",
    "distribute",
    "encoders",
    "export",
    "fewshot",
    "heads",
    "layers",
    "losses",
    "methods",
    "metrics",
    "models",
    "multitask",
    "optimizers",
    "predict",
    "schedules",
    "strategies",
    "tasks",
    "train",
    "transfer",
    "vectors",
]
