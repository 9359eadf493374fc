"""Tests for kt.models.BiLSTMTagger: word-vector NER, raw sentences in, one tag per word."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_keras_round_trip
from ktransfer.tasks.bilstm_tagger import WordFeatures
from ktransfer.tasks.bilstm_tagger import case_classes
from ktransfer.tasks.bilstm_tagger import prepare_sentences
from ktransfer.tasks.bilstm_tagger import save_word_tagger
from ktransfer.tasks.bilstm_tagger import word_tagger_function
from test_token_classification import SERVE_TAGGER
from test_token_classification import run_fresh
from test_token_classification import toy_dataset

# A toy NER task whose tags need context and casing: "film"/"movie" are
# entities of type X, and "Paris" (capitalised) is of type Y while "paris"
# is not; a Title-case word the vectors lack ("Zorg") right after "in" is a
# Y too, so unknown words must be tagged from their neighbours and casing.
ENTITY = {"film": "X", "movie": "X", "Paris": "Y"}
OTHER = ["the", "a", "is", "was", "great", "dull", "and", "not", "very", "it", "paris"]
WORDS = sorted(set(OTHER) | {"film", "movie", "in"})  # the vectors: lowercase words only


def toy_sentences(n, seed=0):
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(n):
        words = list(rng.choice(OTHER + list(ENTITY), size=rng.integers(1, 8)))
        if rng.random() < 0.4:
            words += ["in", str(rng.choice(["Zorg", "Blorp", "Paris"]))]
        tags = []
        for i, word in enumerate(words):
            unknown_place = word[0].isupper() and i > 0 and words[i - 1] == "in"
            tags.append("I-Y" if unknown_place else ("I-" + ENTITY[word] if word in ENTITY else "O"))
        sentences.append((words, tags))
    return sentences


def toy_vectors(dim=8, seed=0):
    matrix = np.random.default_rng(seed).normal(size=(len(WORDS), dim)).astype(np.float32)
    return kt.WordVectors(WORDS, matrix)


def make_encoder(train):
    encoder = kt.encoders.WordVectorEncoder(toy_vectors(), standardize="lower", seed=0)
    encoder.adapt(train.map(lambda words, tags: words))
    return encoder


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    train = toy_dataset(toy_sentences(400))
    tags = kt.data.tag_vocabulary(train)
    model = kt.models.BiLSTMTagger(make_encoder(train), len(tags), units=16, dropout=0.1, learning_rate=1e-2,
                                   tags=tags)
    model.fit(prepare_sentences(train, tags, batch_size=16, shuffle=True, seed=0), epochs=8, verbose=0)
    return model, tags


def tag_sentences(model, tags, sentences):
    out = word_tagger_function(model, tags)(tf.constant(sentences))
    return [[t.decode() for t in row if t] for row in out["tags"].numpy()]


def test_case_classes_by_hand():
    words = ["the", "Paris", "EU", "U.S.", "1996", "F-16", ",", "McDonald", "A", "Émile", "ÉTÉ", "o'clock"]
    expected = [1, 2, 3, 3, 4, 4, 5, 5, 2, 2, 3, 1]  # lower, Title, UPPER, has_digit, other
    assert case_classes(words).numpy().tolist() == expected


def test_one_tag_per_word_also_for_unknown_and_odd_words(trained):
    model, tags = trained
    sentences = ["the film", "qwxz Blorp zzz , ??? !!", "", "it  was\tdull " + "movie " * 40]
    out = word_tagger_function(model, tags)(tf.constant(sentences))
    words = [[w.decode() for w in row if w] for row in out["words"].numpy()]
    assert words == [s.split() for s in sentences]  # Python's whitespace split
    predicted = [[t.decode() for t in row if t] for row in out["tags"].numpy()]
    assert [len(p) for p in predicted] == [2, 6, 0, 43]  # the encoder's sequence_length cuts nothing
    assert all(t in tags for row in predicted for t in row)
    # A word that `standardize` empties still reads the [UNK] vector.
    stripping = kt.encoders.WordVectorEncoder(toy_vectors(), standardize="lower_and_strip_punctuation")
    stripping.adapt(["the film is great"])
    features = WordFeatures(stripping, case_dim=0)(tf.constant(["the ??? film"]))
    unk = stripping.embedding.embeddings.numpy()[1]
    np.testing.assert_allclose(features.numpy()[0, 1], unk)


def test_learns_entities_from_context_and_casing(trained):
    model, tags = trained
    test = toy_sentences(100, seed=1)
    predicted = tag_sentences(model, tags, [" ".join(w) for w, _ in test])
    scores = kt.metrics.entity_f1([t for _, t in test], predicted)
    assert scores["num_gold"] > 80
    assert scores["f1"] > 0.9, scores  # an untrained tagger is near 0
    assert tag_sentences(model, tags, ["the film in Paris", "a paris film", "it was in Quux"]) == [
        ["O", "I-X", "O", "I-Y"], ["O", "O", "I-X"], ["O", "O", "O", "I-Y"],
    ]


def test_tags_do_not_depend_on_the_batch_padding(trained):
    model, _ = trained
    alone = model(tf.constant(["the film in Paris"]), training=False).numpy()
    padded = model(tf.constant(["the film in Paris", "a dull movie " * 8, ""]), training=False).numpy()
    np.testing.assert_allclose(padded[0, :4], alone[0], rtol=0, atol=1e-5)


def test_config_and_keras_round_trip(trained, tmp_path):
    model, _ = trained
    features = model.get_layer("word_features")
    revived = assert_config_round_trip(features)
    assert revived.case_dim == 8 and revived.encoder.vocabulary_size == features.encoder.vocabulary_size
    loaded = assert_keras_round_trip(model, tf.constant(["the film in Zorg", "", "qwxz"]), tmp_path)
    assert loaded.get_layer("word_features").encoder.vocabulary == features.encoder.vocabulary


def test_is_a_task_fed_by_its_preprocessor_in_tf_data(trained):
    model, tags = trained
    assert isinstance(model, kt.tasks.Task) and model.tags == tags
    assert model.encoder is model.get_layer("word_features").encoder
    assert model.preprocessor.preprocessor is model.encoder.preprocessor  # one vocabulary
    test = toy_sentences(60, seed=2)
    sentences = [" ".join(w) for w, _ in test]
    # The pipeline hands the model integer features only, from every kind of input.
    for data in (toy_dataset(test), prepare_sentences(toy_dataset(test), tags, batch_size=16)):
        features, tag_ids, weights = next(iter(model.make_dataset(data, labelled=True)))
        assert sorted(features) == ["case_ids", "padding_mask", "token_ids"]
        assert all(value.dtype == tf.int32 for value in features.values())
        assert features["case_ids"].shape == tag_ids.shape == weights.shape
        np.testing.assert_array_equal(weights.numpy(), features["padding_mask"].numpy())
    unbatched = model.evaluate(toy_dataset(test), verbose=0, return_dict=True)["accuracy"]
    in_memory = model.evaluate(x=sentences, y=[t for _, t in test], verbose=0, return_dict=True)["accuracy"]
    assert unbatched == pytest.approx(in_memory) and unbatched > 0.9
    # predict_tags / predict_entities answer what the served graph answers.
    assert model.predict_tags(sentences, verbose=0) == tag_sentences(model, tags, sentences)
    probabilities = model.predict(["the film in Paris", ""], verbose=0)
    assert probabilities.shape == (2, 4, len(tags)) and not probabilities[1].any()
    np.testing.assert_allclose(probabilities[0].sum(-1), 1.0, rtol=1e-5)
    text = "the  film in Paris"
    assert model.predict_entities([text], verbose=0) == [[
        {"type": "X", "text": "film", "start": 5, "end": 9, "score": pytest.approx(probabilities[0, 1].max())},
        {"type": "Y", "text": "Paris", "start": 13, "end": 18, "score": pytest.approx(probabilities[0, 3].max())},
    ]]


def test_fits_from_sentences_and_tag_names():
    keras.utils.set_random_seed(0)
    sentences = toy_sentences(160)
    train = toy_dataset(sentences)
    tags = kt.data.tag_vocabulary(train)
    model = kt.models.BiLSTMTagger(make_encoder(train), tags=tags, units=8, dropout=0.0, learning_rate=2e-2)
    history = model.fit(x=[" ".join(w) for w, _ in sentences], y=[t for _, t in sentences], batch_size=16,
                        epochs=3, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    with pytest.raises(ValueError, match="Unknown tag 'B-Z'"):
        model.fit(x=["the film"], y=[["O", "B-Z"]], verbose=0)
    with pytest.raises(ValueError, match="one tag per"):
        model.fit(x=["the film"], y=[["O"]], verbose=0)


def test_export_answers_raw_sentences_in_a_fresh_process(trained, tmp_path):
    model, tags = trained
    sentences = ["the film in Paris", "a paris movie is great", "qwxz", ""]
    expected = word_tagger_function(model, tags)(tf.constant(sentences))["tags"].numpy()
    path = model.export(tmp_path / "ner" / "1")
    with open(os.path.join(path, "assets.extra", "labels.txt"), encoding="utf-8") as f:
        assert f.read().split() == tags
    answer = run_fresh(SERVE_TAGGER, path, json.dumps(sentences))
    assert answer["foreign_modules"] == []
    assert answer["tags"] == [[t.decode() for t in row] for row in expected]
    assert answer["words"][0] == ["the", "film", "in", "Paris", ""]  # padded to 5 words
    assert answer["tags"][0] == ["O", "I-X", "O", "I-Y", ""]
    assert answer["tags"][3] == [""] * 5
    with pytest.raises(FileExistsError, match="new version number"):
        save_word_tagger(model, path, tags=tags)


def test_prepare_sentences_batches_and_errors():
    sentences = toy_sentences(50)
    tags = ["O", "I-X", "I-Y"]
    batches = prepare_sentences(toy_dataset(sentences), tags, batch_size=16)
    assert int(batches.cardinality()) == 4 and batches.tags == tags
    text, tag_ids, weights = next(iter(batches))
    assert text.numpy()[0].decode() == " ".join(sentences[0][0])
    assert tag_ids.shape == weights.shape == (16, max(len(w) for w, _ in sentences[:16]))
    assert weights.numpy().sum() == sum(len(w) for w, _ in sentences[:16])
    assert [tags[i] for i in tag_ids.numpy()[0][: len(sentences[0][1])]] == sentences[0][1]
    shuffled = prepare_sentences(toy_dataset(sentences), tags, batch_size=16, shuffle=True, seed=0)
    seen = sorted(s.decode() for batch, _, _ in shuffled for s in batch.numpy())
    assert seen == sorted(" ".join(w) for w, _ in sentences)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in `tags`"):
        list(prepare_sentences(toy_dataset(sentences), ["O", "I-X"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="holds whitespace"):
        list(prepare_sentences(toy_dataset([(["New York", "is"], ["I-Y", "O"])]), tags))
    with pytest.raises(ValueError, match="list of tag names"):
        prepare_sentences(toy_dataset(sentences), "O")


def test_bad_arguments_name_the_problem():
    train = toy_dataset(toy_sentences(10))
    encoder = make_encoder(train)
    with pytest.raises(ValueError, match="pooling=None"):
        pooled = kt.encoders.WordVectorEncoder(toy_vectors(), pooling="mean")
        kt.models.BiLSTMTagger(pooled, 3)
    with pytest.raises(ValueError, match="adapt"):
        kt.models.BiLSTMTagger(kt.encoders.WordVectorEncoder(toy_vectors()), 3)
    with pytest.raises(ValueError, match="num_tags"):
        kt.models.BiLSTMTagger(encoder, 1)
    with pytest.raises(ValueError, match="case_dim"):
        kt.models.BiLSTMTagger(encoder, 3, case_dim=-1)
    with pytest.raises(ValueError, match="dropout"):
        kt.models.BiLSTMTagger(encoder, 3, dropout=1.0)
    with pytest.raises(ValueError, match="`num_tags`=3 but `tags` has 2"):
        kt.models.BiLSTMTagger(encoder, 3, tags=["O", "I-X"])
    model = kt.models.BiLSTMTagger(encoder, 3, units=4)
    assert model.tags == ["0", "1", "2"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="len\\(tags\\)"):
        word_tagger_function(model, ["O", "I-X"])(tf.constant(["the film"]))


@pytest.mark.slow
@pytest.mark.shared_data
def test_glove_tagger_on_real_conll_beats_the_dictionary_baseline(shared_data):
    """1,500 CoNLL-2003 sentences, 2 epochs: entity F1 on 400 dev sentences."""
    import importlib.util

    from conftest import REPO
    from ktransfer import assets

    if not assets.is_cached("glove50"):
        pytest.skip("GloVe asset not fetched: run `ktransfer assets fetch glove50`")
    spec = importlib.util.spec_from_file_location("ner_benchmark", os.path.join(REPO, "benchmarks", "ner.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    keras.utils.set_random_seed(0)
    folder = os.path.join(shared_data, "conll2003")
    train = kt.data.from_conll(os.path.join(folder, "train.txt"), scheme="iob2").take(1500)
    dev = benchmark.sentences_of(kt.data.from_conll(os.path.join(folder, "dev.txt"), scheme="iob2").take(400))
    tags = kt.data.tag_vocabulary(train)
    encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower", max_tokens=20_000, seed=0)
    encoder.adapt(train.map(lambda words, tags: words))
    model = kt.models.BiLSTMTagger(encoder, len(tags), units=64, learning_rate=5e-3)
    model.fit(prepare_sentences(train, tags, shuffle=True, seed=0), epochs=2, verbose=0)
    predicted = tag_sentences(model, tags, [" ".join(w) for w, _ in dev])
    f1 = kt.metrics.entity_f1([t for _, t in dev], predicted)["f1"]
    dictionary = benchmark.dictionary_baseline(benchmark.sentences_of(train), dev)
    # Measured: 0.64 against the dictionary baseline's (most frequent
    # training tag per word) ~0.5; an untrained tagger scores ~0.
    assert f1 > max(0.55, dictionary + 0.05), (f1, dictionary)
