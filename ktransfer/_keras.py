"""Import Keras on the TensorFlow backend, or explain why that is impossible.

ktransfer trains on tf.data pipelines under tf.distribute strategies and
exports TensorFlow SavedModels, so it needs Keras 3 on the TensorFlow backend.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "ktransfer needs Keras on the TensorFlow backend, but Keras is set to "
        f"{keras.backend.backend()!r}. Set the environment variable "
        "KERAS_BACKEND=tensorflow before importing keras (or ktransfer)."
    )
