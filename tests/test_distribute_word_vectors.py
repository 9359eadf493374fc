"""Word-vector tasks under a real MirroredStrategy: plain `model.fit`, same weights as on one device.

Keras 3's TensorFlow trainer builds a distributed model from a first batch
that it averages over the replicas (`strategy.reduce("MEAN", batch)`),
which fails on strings (keras-team/keras#20329). The word-vector tasks
(`kt.models.TextCNN`, `BiLSTMClassifier`, `BiLSTMTagger`) tokenise in the
tf.data pipeline, so the replicated model sees integer ids only, and their
`DistributedFitMixin` builds from the local replica's batch: plain
`model.fit` on a dataset of raw strings works under the strategy, without
`kt.train`, and ends with the weights of single-device training (embedding
rows included: the sparse gradients are summed over the replicas).
"""

import textwrap

import pytest

from harness import train_on_one_and_two_devices

WORDS = sorted(set("a great film good movie the plot is dull awful and boring fine very bad".split()))

TRAIN = """
TEXTS = ["a great film", "a good movie", "the plot is dull", "awful and boring",
         "a very fine film", "bad and dull", "the movie is great", "boring plot"] * 2
LABELS = [1, 1, 0, 0, 1, 0, 1, 0] * 2


def no_strings_reach_the_model(model):
    seen = []
    step = model.train_step

    def train_step(data):
        seen.extend(tensor.dtype for tensor in tf.nest.flatten(data))
        return step(data)

    model.train_step = train_step
    return seen


def weights(*models):
    return [np.array(w) for model in models for w in model.get_weights()]


def train(strategy):
    keras.utils.set_random_seed(0)
    # Adapted outside the scope, as a new user would: the task moves the matrix into it.
    encoder = kt.encoders.WordVectorEncoder(
        vectors, standardize="lower", trainable=True, fill_vocabulary=False, seed=0
    )
    encoder.adapt(TEXTS)
    with strategy.scope():
        cnn = kt.models.TextCNN(encoder, 2, filter_sizes=(1, 2), num_filters=4, dropout=0.0,
                                learning_rate=1e-2)
        tagger_encoder = kt.encoders.WordVectorEncoder(
            vectors, standardize="lower", trainable=True, fill_vocabulary=False, seed=1
        )
        tagger_encoder.adapt(TEXTS)
        tagger = kt.models.BiLSTMTagger(tagger_encoder, tags=["O", "B-ADJ"], units=4, dropout=0.0,
                                        case_dim=2, learning_rate=1e-2) if TAGGER else None
    models = [cnn] + ([tagger] if tagger is not None else [])
    start = weights(*models)
    seen = no_strings_reach_the_model(cnn)
    # Plain Keras fit on a tf.data.Dataset of raw strings: no kt.train.
    data = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(8, drop_remainder=True)
    cnn.fit(data, epochs=3, verbose=0)
    assert seen and tf.string not in seen, seen
    if tagger is not None:
        # Three-word sentences, so both replicas average over as many words as one device.
        sentences = [t for t in TEXTS if len(t.split()) == 3][:8] * 2
        tags = [["B-ADJ" if w in ("great", "good", "dull", "bad", "boring", "fine") else "O"
                 for w in s.split()] for s in sentences]
        seen = no_strings_reach_the_model(tagger)
        tagger.fit(x=sentences, y=tags, batch_size=8, epochs=3, shuffle=False, verbose=0)
        assert seen and tf.string not in seen, seen
    return start, weights(*models)
"""


def test_text_cnn_fits_raw_strings_on_two_cpu_devices_like_on_one():
    """TextCNN over tiny fine-tuned vectors: plain fit on a dataset of raw strings,
    1 device against MirroredStrategy over 2 logical CPUs: the same weights."""
    difference, change = train_on_one_and_two_devices(
        textwrap.dedent(
            f"""
            matrix = np.random.default_rng(0).normal(size=({len(WORDS)}, 8)).astype("float32")
            vectors = kt.WordVectors({WORDS!r}, matrix)
            TAGGER = False
            """
        )
        + TRAIN
    )
    assert difference < 1e-5
    assert change > 1e-3  # training really moved the weights


@pytest.mark.slow
def test_text_cnn_and_tagger_over_glove_on_two_cpu_devices_match_single_device():
    """The same with the real GloVe 50d vectors of the words, and a BiLSTMTagger
    fitted on raw sentences and tag lists as well."""
    from ktransfer import assets

    if not assets.is_cached("glove50"):
        pytest.skip("GloVe asset not fetched; run `ktransfer assets fetch glove50`")
    difference, change = train_on_one_and_two_devices(
        textwrap.dedent(
            f"""
            vectors = kt.WordVectors.load(kt.assets.path("glove50"), vocabulary={WORDS!r})
            assert len(vectors) == {len(WORDS)}
            TAGGER = True
            """
        )
        + TRAIN
    )
    assert difference < 1e-5
    assert change > 1e-3
