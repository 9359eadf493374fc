"""`get_strategy`: pick a tf.distribute strategy by name."""

import json
import os

from ktransfer._keras import keras  # noqa: F401  (sets the backend first)

import tensorflow as tf

STRATEGIES = ("auto", "cpu", "default", "mirrored", "multiworker", "tpu")


def get_strategy(name="auto", tpu=None):
    """Return a `tf.distribute.Strategy`.

    Args:
        name: "auto" (a TPU if one is attached, else MirroredStrategy over
            all GPUs when there are several, else the default strategy),
            "cpu"/"default" (the default strategy), "mirrored" (all local
            GPUs, or the CPU), "multiworker" (MultiWorkerMirroredStrategy;
            the cluster comes from the `TF_CONFIG` environment variable),
            or "tpu" (a Colab/Cloud TPU; `tpu` names it, "" for Colab).

    Build and compile the model inside `strategy.scope()`:

    ```python
    strategy = kt.distribute.get_strategy("auto")
    with strategy.scope():
        encoder = kt.encoders.BertEncoder.from_preset("minilm")
        model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
        model.compile(optimizer="adam", loss=model.layers[-1].default_loss())
    model.fit(train)
    ```
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Choose one of {STRATEGIES}.")
    if name == "auto":
        resolver = _tpu_resolver(tpu)
        if resolver is not None:
            return _tpu_strategy(resolver)
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name in ("cpu", "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" in os.environ:
            json.loads(os.environ["TF_CONFIG"])  # a clear JSON error up front
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = _tpu_resolver(tpu if tpu is not None else "")
    if resolver is None:
        raise RuntimeError(
            "No TPU found. On Colab choose Runtime > Change runtime type > TPU; "
            "elsewhere pass the TPU name (tpu=...) or use strategy='auto'."
        )
    return _tpu_strategy(resolver)


def _tpu_resolver(tpu):
    if tpu is None and not any(
        key in os.environ for key in ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE")
    ):
        return None
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    except Exception:  # noqa: BLE001  no TPU here: not found, or no metadata server
        return None


def _tpu_strategy(resolver):
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
