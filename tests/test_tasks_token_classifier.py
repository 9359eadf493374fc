"""kt.tasks.TokenClassifier: raw sentences in, tags and entity spans out, export, wrapping."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_task_contract
from test_token_classification import toy_dataset
from test_token_classification import toy_sentences

SEQUENCE_LENGTH = 16
BERT_WEIGHTS = 5 + 2 * 16 + 2  # the 2-block tiny BERT of conftest (pooler: the last 2)
TAGS = ["O", "I-X", "I-Y"]
SENTENCES = ["the films and a plot", "it was a very dull movie"]
SENTENCE_TAGS = [["O", "I-X", "O", "O", "I-Y"], ["O", "O", "O", "O", "O", "I-X"]]


def test_contract_and_fresh_process_export(tiny_preset, tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        return kt.tasks.TokenClassifier.from_preset(tiny_preset, tags=TAGS, sequence_length=SEQUENCE_LENGTH)

    task, loaded = assert_task_contract(
        make, SENTENCES, SENTENCE_TAGS, (2, SEQUENCE_LENGTH, len(TAGS)),
        num_trainable_weights=BERT_WEIGHTS - 2 + 2, num_non_trainable_weights=2, tmp_path=tmp_path,
    )
    assert type(loaded) is kt.tasks.TokenClassifier and loaded.tags == TAGS
    assert loaded.predict_tags(SENTENCES) == task.predict_tags(SENTENCES)
    assert_config_round_trip(task.preprocessor)


@pytest.fixture(scope="module")
def trained(tiny_preset):
    keras.utils.set_random_seed(0)
    train = toy_sentences(128, seed=0)
    tagger = kt.tasks.TokenClassifier.from_preset(tiny_preset, tags=TAGS, sequence_length=24, dropout=0.0)
    tagger.compile(optimizer=keras.optimizers.Adam(1e-2))
    # Sentences as strings; the words are their whitespace-separated tokens.
    tagger.fit(x=[" ".join(w) for w, _ in train], y=[t for _, t in train], batch_size=16, epochs=5,
               verbose=0)
    return tagger


def test_learns_the_toy_entities_and_decodes_spans_with_offsets(trained):
    test = toy_sentences(48, seed=1)
    predicted = trained.predict_tags([w for w, _ in test], verbose=0)  # word lists work too
    scores = kt.metrics.entity_f1([t for _, t in test], predicted)
    assert scores["num_gold"] > 30 and scores["f1"] > 0.9, scores  # untrained: near 0
    evaluation = trained.evaluate(x=[w for w, _ in test], y=[t for _, t in test], verbose=0,
                                  return_dict=True)
    assert evaluation["accuracy"] > 0.95  # word accuracy (weighted: first sub-tokens only)

    texts = ["the  films and a plot", "", "it was a very dull movie ."]
    spans = trained.predict_entities(texts, verbose=0)
    assert [[(s["type"], s["text"], s["start"], s["end"]) for s in row] for row in spans] == [
        [("X", "films", 5, 10), ("Y", "plot", 17, 21)], [], [("X", "movie", 19, 24)],
    ]
    for text, row in zip(texts, spans):
        for span in row:
            assert text[span["start"]:span["end"]] == span["text"] and 0.5 < span["score"] <= 1.0

    probabilities = trained.predict(["the films", "a plot is not a film"], verbose=0)
    assert probabilities.shape == (2, 6, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities[0, :2].sum(-1), 1.0, atol=1e-5)
    assert not probabilities[0, 2:].any()  # past the first sentence's two words


def test_entities_follow_bio_chunking_with_mean_scores(trained):
    # The decoding, on chosen probabilities: B-X I-X | O | I-Y (opens an entity after O).
    tagger = kt.tasks.TokenClassifier(trained.encoder, tags=["O", "B-X", "I-X", "I-Y"])
    probabilities = np.zeros((1, 4, 4), "float32")
    probabilities[0, 0, 1], probabilities[0, 1, 2] = 0.9, 0.7
    probabilities[0, 2, 0], probabilities[0, 3, 3] = 1.0, 0.6
    tagger.predict = lambda words, **kwargs: probabilities
    [spans] = tagger.predict_entities(["New York is nice"])
    assert [(s["type"], s["text"], s["start"], s["end"]) for s in spans] == [
        ("X", "New York", 0, 8), ("Y", "nice", 12, 16),
    ]
    assert spans[0]["score"] == pytest.approx(0.8) and spans[1]["score"] == pytest.approx(0.6)


def test_conll_dataset_trains_and_old_models_wrap(trained, tiny_preset, tmp_path):
    sentences = toy_sentences(32, seed=2)
    dataset = toy_dataset(sentences)  # (words, tags) as kt.data.from_conll yields
    results = trained.evaluate(dataset, verbose=0, return_dict=True)
    assert results["accuracy"] > 0.95
    # A Sequential tagger (the old way) wraps into a task sharing its layers.
    model = keras.Sequential([trained.encoder, trained.head])
    wrapped = kt.tasks.TokenClassifier.from_model(model, TAGS)
    words = [w for w, _ in sentences[:4]]
    np.testing.assert_allclose(wrapped.predict(words, verbose=0), trained.predict(words, verbose=0), atol=1e-6)
    tag = kt.tasks.token_classifier.tagger_function(model, TAGS)
    served = tag(tf.constant([" ".join(w) for w in words]))["tags"].numpy()
    assert [[t.decode() for t in row if t] for row in served] == wrapped.predict_tags(words, verbose=0)
    assert kt.tasks.TokenClassifier.from_model(trained, TAGS) is trained


def test_errors_name_the_fix(trained, tiny_preset):
    with pytest.raises(ValueError, match="one tag per"):
        trained.fit(x=["the film"], y=[["O"]], verbose=0)
    with pytest.raises(ValueError, match="Unknown tag 'B-Z'"):
        trained.fit(x=["the film"], y=[["O", "B-Z"]], verbose=0)
    with pytest.raises(ValueError, match="pooling=None"):
        kt.tasks.TokenClassifier(kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="cls"), tags=TAGS)
    with pytest.raises(ValueError, match="Give `tags`"):
        kt.tasks.TokenClassifier(trained.encoder)
    with pytest.raises(ValueError, match="2 outputs"):
        kt.tasks.TokenClassifier.from_model(
            keras.Sequential([trained.encoder, kt.heads.TokenClassificationHead(2)]), TAGS)
    with pytest.raises(TypeError, match="character offsets"):
        trained.predict_entities([["the", "film"]])
