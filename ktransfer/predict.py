"""`predict`: run a token-input model on raw strings."""

import numpy as np

from ktransfer._keras import keras  # noqa: F401  (sets the backend first)


def predict(model, texts, preprocessor=None, batch_size=64):
    """Run `model` on raw texts, tokenising with the encoder's preprocessor.

    Models built from `BertEncoder` take token tensors (tokenisation lives in
    the tf.data pipeline so training also works on TPUs); this helper puts the
    preprocessor back in front, batched, for quick checks in a notebook.
    For serving, export with `ktransfer.export.save` instead.

    Args:
        model: a Keras model whose first layer is an encoder.
        texts: a string or a list of strings.
        preprocessor: defaults to the preprocessor of the model's encoder.
        batch_size: texts per forward pass.

    Returns:
        A numpy array: the model's outputs, one row per text.

    Example:

    ```python
    scores = kt.predict(model, ["a great film", "a dull film"])
    ```
    """
    from ktransfer.data.pipeline import prepare
    from ktransfer.data.readers import from_lists
    from ktransfer.export import find_preprocessor

    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("`texts` is empty: give at least one string.")
    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    if preprocessor is None:
        return np.asarray(model.predict(np.array(texts, dtype=object), verbose=0))
    dataset = prepare(from_lists(texts), preprocessor, batch_size=batch_size)
    outputs = [np.asarray(model(batch, training=False)) for batch in dataset]
    return np.concatenate(outputs, axis=0)


__all__ = ["predict"]
