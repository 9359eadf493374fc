"""Sentence pairs: cross-encoder inputs, SiameseEncoder, kt.export.save_pair."""

import json
import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_keras_round_trip
from test_token_classification import run_fresh

PAIRS = [
    ("the film is great", "a good movie"),
    ("the plot was dull and boring", "it is bad"),
    ("a film", "the acting was very very good and the plot was not dull at all"),
]


@pytest.fixture(scope="module")
def siamese(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling="mean")
    return kt.models.SiameseEncoder(encoder)


def test_cross_encoder_pairs_get_segment_ids(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    ds = kt.data.from_lists([PAIRS[0]], ["same"])
    features, _ = next(iter(kt.data.prepare(ds, encoder.preprocessor)))
    # [CLS] the film is great [SEP] a good movie [SEP]
    np.testing.assert_array_equal(features["segment_ids"][0, :10], [0] * 6 + [1] * 4)
    assert int(features["padding_mask"].numpy().sum()) == 10


def test_tfds_pairs_read_through_from_tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        ds = kt.data.from_tfds("glue/mrpc", "train", text=("sentence1", "sentence2"), label="label")
    assert ds.class_names == ["not_equivalent", "equivalent"]
    (a, b), label = next(iter(ds))
    assert a.dtype == b.dtype == tf.string and label.dtype == tf.int32


def test_similarity_is_the_cosine_of_the_embeddings(siamese):
    encoder = siamese.encoder
    a = [p[0] for p in PAIRS]
    b = [p[1] for p in PAIRS]
    features = siamese.preprocessor((tf.constant(a), tf.constant(b)))
    similarity = np.asarray(siamese(features))
    ea = np.asarray(encoder(encoder.preprocessor(tf.constant(a))))
    eb = np.asarray(encoder(encoder.preprocessor(tf.constant(b))))
    expected = (ea * eb).sum(-1) / np.linalg.norm(ea, axis=-1) / np.linalg.norm(eb, axis=-1)
    np.testing.assert_allclose(similarity, expected, atol=1e-5)
    assert similarity.shape == (3,)


def test_prepare_buckets_pairs_by_their_longer_text(siamese):
    ds = kt.data.from_lists(PAIRS, [1, 0, 0])
    features, targets = next(iter(kt.data.prepare(ds, siamese.preprocessor, batch_size=3)))
    assert features["token_ids_a"].shape == features["token_ids_b"].shape == (3, 16)
    # The long second text (14 words + [CLS] + [SEP]) is kept whole.
    assert int(features["padding_mask_b"][2].numpy().sum()) == 16
    assert int(features["padding_mask_a"][2].numpy().sum()) == 4
    full = siamese.preprocessor((tf.constant([p[0] for p in PAIRS]), tf.constant([p[1] for p in PAIRS])))
    np.testing.assert_allclose(siamese(features), siamese(full), atol=1e-5)
    np.testing.assert_array_equal(targets, [1, 0, 0])


def test_config_and_keras_round_trip(siamese, tmp_path):
    assert_config_round_trip(siamese.preprocessor)
    revived = kt.models.SiameseEncoder.from_config(siamese.get_config())
    assert revived.encoder.pooling == "mean"
    features = siamese.preprocessor((tf.constant(["a film"]), tf.constant(["a movie"])))
    assert_keras_round_trip(siamese, features, tmp_path)


def test_bad_inputs():
    with pytest.raises(TypeError, match="Keras layer"):
        kt.models.SiameseEncoder("minilm")
    with pytest.raises(ValueError, match="pooling='mean'"):
        kt.models.SiameseEncoder(kt.encoders.BertEncoder(_tiny_backbone(), pooling=None))


def _tiny_backbone():
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4,
        intermediate_dim=8, max_sequence_length=8,
    )


def test_training_pulls_paraphrases_together(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    model = kt.models.SiameseEncoder(encoder)
    pairs = [("the film", "a film"), ("the movie", "a movie"), ("the plot", "a plot"),
             ("the film", "the plot"), ("a movie", "a plot"), ("the acting", "a film")]
    targets = [1, 1, 1, 0, 0, 0]  # 1: same meaning (cosine target 1), 0: different
    batches = kt.data.prepare(kt.data.from_lists(pairs * 8, targets * 8), model.preprocessor, batch_size=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = model.evaluate(batches, verbose=0)
    model.fit(batches, epochs=8, verbose=0)
    after = model.evaluate(batches, verbose=0)
    assert after < 0.5 * before, (before, after)


SERVE_PAIR = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
a, b = json.loads(sys.argv[2])
out = serve(text_a=tf.constant(a), text_b=tf.constant(b))
print(json.dumps({k: (v.numpy().tolist() if v.dtype != tf.string else [s.decode() for s in v.numpy()])
                  for k, v in out.items()}))
"""


def test_exported_siamese_takes_two_string_inputs_in_a_fresh_process(siamese, tmp_path):
    a = [p[0] for p in PAIRS]
    b = [p[1] for p in PAIRS]
    expected = np.asarray(siamese(siamese.preprocessor((tf.constant(a), tf.constant(b)))))
    path = kt.export.save_pair(siamese, tmp_path / "sts" / "1")
    answer = run_fresh(SERVE_PAIR, path, json.dumps([a, b]))
    assert sorted(answer) == ["similarity"]
    np.testing.assert_allclose(answer["similarity"], expected, atol=1e-5)


def test_exported_cross_encoder_takes_two_string_inputs(tiny_preset, tmp_path):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=32)
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    features, _ = next(iter(kt.data.prepare(kt.data.from_lists(PAIRS, [1, 0, 0]), encoder.preprocessor)))
    expected = np.asarray(tf.nn.softmax(model(features)))
    path = kt.export.save_pair(model, tmp_path / "nli" / "1", labels=["different", "same"])
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(text_a=tf.constant([p[0] for p in PAIRS]), text_b=tf.constant([p[1] for p in PAIRS]))
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert [s.decode() for s in out["label"].numpy()] == [
        ["different", "same"][i] for i in expected.argmax(-1)
    ]
    with open(os.path.join(path, "assets.extra", "labels.txt")) as f:
        assert f.read().split() == ["different", "same"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_minilm_siamese_retrieves_xquad_contexts(minilm_path, shared_data):
    """Zero-shot retrieval on a real pair task: question -> its paragraph."""
    with open(os.path.join(shared_data, "squad_small", "xquad.en.json"), encoding="utf-8") as f:
        articles = json.load(f)["data"]
    contexts, questions, answers = [], [], []
    for article in articles:
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            for qa in paragraph["qas"][:2]:
                questions.append(qa["question"])
                answers.append(len(contexts) - 1)
    questions, answers = questions[::4], answers[::4]
    encoder = kt.encoders.BertEncoder.from_preset(minilm_path, sequence_length=256, pooling="mean")
    siamese = kt.models.SiameseEncoder(encoder)

    def embed(texts):
        batches = kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, batch_size=32)
        return np.concatenate([np.asarray(siamese.embed(b)) for b in batches])

    scores = embed(questions) @ embed(contexts).T
    accuracy = float(np.mean(scores.argmax(-1) == np.array(answers)))
    # Chance is 1/len(contexts) (~0.02).
    assert len(contexts) > 40 and len(questions) > 40
    assert accuracy > 0.6, accuracy
