"""TokenClassificationHead, training a tagger, and kt.export.save_tagger."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_keras_round_trip

# A toy NER task over the tiny in-test vocabulary: "film"/"movie" (and their
# plurals, two sub-tokens) are entities of type X, "plot" of type Y. Each tag
# depends on its word only (IOB1; adjacent words of a type form one entity).
ENTITY = {"film": "X", "films": "X", "movie": "X", "movies": "X", "plot": "Y"}
OTHER = ["the", "a", "is", "was", "great", "dull", "and", "not", "very", "it"]


def toy_sentences(n, seed=0):
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(n):
        words = list(rng.choice(OTHER + list(ENTITY), size=rng.integers(2, 9)))
        tags = ["I-" + ENTITY[w] if w in ENTITY else "O" for w in words]
        sentences.append((words, tags))
    return sentences


def toy_dataset(sentences):
    return tf.data.Dataset.from_tensor_slices(
        (
            tf.ragged.constant([w for w, _ in sentences]),
            tf.ragged.constant([t for _, t in sentences]),
        )
    ).map(lambda w, t: (w, t))


def test_head_maps_every_token_like_a_dense_layer():
    head = kt.heads.TokenClassificationHead(5, dropout=0.3)
    x = np.random.default_rng(0).normal(size=(2, 7, 8)).astype("float32")
    logits = np.asarray(head(x))
    kernel, bias = head.output_dense.get_weights()
    np.testing.assert_allclose(logits, x @ kernel + bias, rtol=1e-5, atol=1e-5)
    assert logits.shape == (2, 7, 5) and logits.dtype == np.float32


def test_config_and_keras_round_trip(tiny_preset, tmp_path):
    assert_config_round_trip(kt.heads.TokenClassificationHead(4, dropout=0.2))
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling=None)
    model = keras.Sequential([encoder, kt.heads.TokenClassificationHead(4)])
    inputs = encoder.preprocessor(tf.constant(["the film is great", "a plot"]))
    assert_keras_round_trip(model, inputs, tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_tags": 1}, "num_tags"), ({"num_tags": "9"}, "num_tags"), ({"num_tags": 3, "dropout": 1.0}, "dropout")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.heads.TokenClassificationHead(**kwargs)


def test_pooled_input_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="pooling=None"):
        kt.heads.TokenClassificationHead(3)(np.zeros((2, 8), "float32"))


def test_loss_averages_over_weighted_tokens_only():
    loss = kt.heads.TokenClassificationHead(3).default_loss()
    labels = np.array([[0, 2, 1, 0]])
    logits = np.zeros((1, 4, 3), "float32")
    logits[0, 1, 2] = 5.0  # a confident right answer on a weighted token
    weights = np.array([[0.0, 1.0, 1.0, 0.0]], "float32")
    log_softmax = np.asarray(tf.nn.log_softmax(logits))
    expected = -(log_softmax[0, 1, 2] + log_softmax[0, 2, 1]) / 2
    assert float(loss(labels, logits, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def trained_tagger(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling=None)
    train = toy_dataset(toy_sentences(128, seed=0))
    tags = kt.data.tag_vocabulary(train)
    head = kt.heads.TokenClassificationHead(len(tags))
    model = keras.Sequential([encoder, head])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=head.default_loss(),
        weighted_metrics=["accuracy"],
    )
    batches = kt.data.prepare_tokens(train, encoder.preprocessor, tags, batch_size=16, shuffle=True, seed=0)
    model.fit(batches, epochs=6, verbose=0)
    return model, tags


def test_training_learns_the_entities(trained_tagger):
    model, tags = trained_tagger
    test = toy_sentences(64, seed=1)
    tag = kt.export.tagger_function(model, tags)
    out = tag(tf.constant([" ".join(w) for w, _ in test]))
    predicted = [[t.decode() for t in row[: len(w)]] for (w, _), row in zip(test, out["tags"].numpy())]
    scores = kt.metrics.entity_f1([t for _, t in test], predicted)
    assert scores["num_gold"] > 50
    assert scores["f1"] > 0.9, scores  # an untrained tagger is near 0


SERVE_TAGGER = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the tokenizer ops
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({
    "tags": [[t.decode() for t in row] for row in out["tags"].numpy()],
    "words": [[t.decode() for t in row] for row in out["words"].numpy()],
    "foreign_modules": sorted(m for m in ("keras_hub", "ktransfer") if m in sys.modules),
}))
"""


def run_fresh(script, *args):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, env=env, cwd="/", timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_exported_tagger_answers_raw_sentences_in_a_fresh_process(trained_tagger, tmp_path):
    model, tags = trained_tagger
    sentences = ["the films and a plot", "it was a very dull movie", "great", ""]
    expected = kt.export.tagger_function(model, tags)(tf.constant(sentences))["tags"].numpy()
    path = kt.export.save_tagger(model, tmp_path / "ner" / "1", tags=tags)
    with open(os.path.join(path, "assets.extra", "labels.txt"), encoding="utf-8") as f:
        assert f.read().split() == tags
    answer = run_fresh(SERVE_TAGGER, path, json.dumps(sentences))
    assert answer["foreign_modules"] == []
    assert answer["tags"] == [[t.decode() for t in row] for row in expected]
    assert answer["words"][0] == ["the", "films", "and", "a", "plot", ""]
    assert answer["tags"][0] == ["O", "I-X", "O", "O", "I-Y", ""]
    assert answer["tags"][1][5] == "I-X" and answer["tags"][2][1:] == [""] * 5
    assert answer["tags"][3] == [""] * 6  # an empty sentence has no words


def test_save_tagger_errors(trained_tagger, tmp_path):
    model, tags = trained_tagger
    with pytest.raises(ValueError, match="integer version folder"):
        kt.export.save_tagger(model, tmp_path / "ner" / "latest", tags=tags)
    with pytest.raises(ValueError, match="list of tag names"):
        kt.export.save_tagger(model, tmp_path / "ner" / "1", tags="O")
    with pytest.raises(ValueError, match="`tags` has 2 names but the model's TokenClassificationHead has 3"):
        kt.export.save_tagger(model, tmp_path / "ner" / "2", tags=tags[:-1])
    assert not os.path.exists(tmp_path / "ner" / "2")
