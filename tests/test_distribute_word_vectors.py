"""A GloVe model under a real MirroredStrategy: same weights as on one device.

Keras 3.15's TensorFlow trainer builds a distributed model from a first batch
that it averages over the replicas (`strategy.reduce("MEAN", batch)` in
`_maybe_symbolic_build`): fine for BERT's integer token ids, an
`InvalidArgumentError` (AddN on strings) for the raw-string word-vector models
(TextCNN, BiLSTMClassifier, BiLSTMTagger). This is
keras-team/keras#20329, which `kt.train` already works around for
MultiWorkerMirroredStrategy (`_build_from_plain_batch`: build from a plain,
undistributed batch). Without it, this test fails at the first `fit`; with
it, everything else (per-replica string lookups, the embedding's sparse
gradients summed over the replicas) works as on one device.
"""

import textwrap

import pytest

from harness import train_on_one_and_two_devices

WORDS = sorted(set("a great film good movie the plot is dull awful and boring fine very bad".split()))


def test_text_cnn_over_glove_on_two_cpu_devices_matches_single_device():
    """TextCNN over fine-tuned GloVe vectors (a slice of the real 50d file:
    its words only), the same global batch of raw strings on 1 device and
    split over 2 logical CPUs: the same weights, embedding rows included."""
    from ktransfer import assets

    if not assets.is_cached("glove50"):
        pytest.skip("GloVe asset not fetched; run `ktransfer assets fetch glove50`")
    difference, change = train_on_one_and_two_devices(
        textwrap.dedent(
            f"""
        from ktransfer.app.train import _build_from_plain_batch

        vectors = kt.WordVectors.load(kt.assets.path("glove50"), vocabulary={WORDS!r})
        assert len(vectors) == {len(WORDS)}

        def train(strategy):
            keras.utils.set_random_seed(0)
            texts = ["a great film", "a good movie", "the plot is dull", "awful and boring",
                     "a very fine film", "bad and dull", "the movie is great", "boring plot"] * 2
            labels = [1, 1, 0, 0, 1, 0, 1, 0] * 2
            with strategy.scope():
                encoder = kt.encoders.WordVectorEncoder(
                    vectors, standardize="lower", trainable=True, fill_vocabulary=False, seed=0
                )
                encoder.adapt(texts)
                model = kt.models.TextCNN(encoder, 2, filter_sizes=(1, 2), num_filters=4,
                                          dropout=0.0, learning_rate=1e-2)
            data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(8, drop_remainder=True)
            # kt.train's workaround of keras-team/keras#20329, needed with several replicas.
            if strategy.num_replicas_in_sync > 1:
                _build_from_plain_batch(model, strategy, next(iter(data)))
            start = [np.array(w) for w in model.get_weights()]
            model.fit(data, epochs=3, verbose=0)
            return start, [np.array(w) for w in model.get_weights()]

        """
        )
    )
    assert difference < 1e-5
    assert change > 1e-3  # training really moved the weights
