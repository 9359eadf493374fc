"""Few-shot learning: episodes, prototypical networks, SetFit-style tuning."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process
from harness import assert_keras_round_trip

# Six classes, each marked by its own word from the tiny BERT's vocabulary.
KEYWORDS = ["film", "movie", "plot", "acting", "love", "hate"]
FILLER = ["a", "the", "is", "was", "very", "and", "but", "it", "not"]


def keyword_dataset(per_class=10, seed=0):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, word in enumerate(KEYWORDS):
        for i in range(per_class):
            words = list(rng.choice(FILLER, size=3)) + [word]
            rng.shuffle(words)
            texts.append(" ".join(words) + " " + "." * (i + 1))  # distinct texts
            labels.append(label)
    return texts, labels


def tiny_encoder(tiny_preset):
    return kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="mean")


# --- EpisodeSampler ----------------------------------------------------------------


def test_episodes_have_the_shapes_and_disjoint_distinct_classes():
    texts = [f"class{c} text{i}" for c in range(6) for i in range(7)]
    labels = [c for c in range(6) for _ in range(7)]
    sampler = kt.fewshot.EpisodeSampler(
        kt.data.from_lists(texts, labels), n_way=3, k_shot=2, n_query=4, seed=3
    )
    episodes = list(sampler.dataset(num_episodes=25).as_numpy_iterator())
    assert len(episodes) == 25
    seen_classes = set()
    for inputs, query_labels in episodes:
        support, query = inputs["support"], inputs["query"]
        assert support.shape == (6,) and query.shape == (12,)
        np.testing.assert_array_equal(inputs["support_labels"], [0, 0, 1, 1, 2, 2])
        np.testing.assert_array_equal(query_labels, np.repeat([0, 1, 2], 4))
        assert not set(support) & set(query)  # no example in both
        assert len(set(support)) == 6 and len(set(query)) == 12
        classes = [t.decode().split()[0] for t in support[::2]]
        assert len(set(classes)) == 3  # distinct classes
        seen_classes.update(classes)
        # Every example sits under its own class's episode-local label.
        for examples, local in ((support, inputs["support_labels"]), (query, query_labels)):
            for text, j in zip(examples, local):
                assert text.decode().split()[0] == classes[j]
    assert len(seen_classes) == 6
    # Reproducible from the seed; another seed gives other episodes.
    again = next(iter(sampler.dataset(num_episodes=1).as_numpy_iterator()))
    np.testing.assert_array_equal(again[0]["support"], episodes[0][0]["support"])
    other = kt.fewshot.EpisodeSampler(
        kt.data.from_lists(texts, labels), n_way=3, k_shot=2, n_query=4, seed=4
    )
    first = next(iter(other.dataset(num_episodes=1).as_numpy_iterator()))
    assert list(first[0]["support"]) != list(episodes[0][0]["support"])


def test_episode_sampler_rejects_small_classes_with_a_clear_error():
    texts = [f"t{i}" for i in range(9)]
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2]
    data = kt.data.from_lists(texts, labels)
    with pytest.raises(ValueError, match=r"k_shot \+ n_query = 3.*class 2 \('2'\): 1"):
        kt.fewshot.EpisodeSampler(data, n_way=2, k_shot=1, n_query=2)
    sampler = kt.fewshot.EpisodeSampler(data, n_way=2, k_shot=1, n_query=2, classes=[0, 1])
    support, query, classes = sampler.episode_indices(0)
    assert sorted(classes) == [0, 1] and support.shape == (2, 1) and query.shape == (2, 2)
    with pytest.raises(ValueError, match="only 2 classes"):
        kt.fewshot.EpisodeSampler(data, n_way=3, k_shot=1, n_query=2, classes=[0, 1])
    with pytest.raises(ValueError, match="k_shot"):
        kt.fewshot.EpisodeSampler(data, n_way=2, k_shot=0, n_query=2)
    with pytest.raises(ValueError, match="labelled"):
        kt.fewshot.EpisodeSampler(kt.data.from_lists(texts), n_way=2, k_shot=1, n_query=1)


# --- PrototypicalNetwork ---------------------------------------------------------


def numpy_prototype_logits(support, labels, query):
    prototypes = np.stack([support[labels == c].mean(0) for c in range(labels.max() + 1)])
    return -((query[:, None, :] - prototypes[None, :, :]) ** 2).sum(-1)


def test_protonet_logits_equal_a_numpy_reference():
    rng = np.random.default_rng(0)
    encoder = keras.layers.Dense(4, name="projection")
    protonet = kt.fewshot.PrototypicalNetwork(encoder)
    support = rng.normal(size=(6, 5)).astype("float32")
    labels = np.array([2, 0, 1, 0, 2, 1], "int32")
    query = rng.normal(size=(7, 5)).astype("float32")
    logits = np.asarray(
        protonet({"support": support, "support_labels": labels, "query": query})
    )
    kernel, bias = encoder.get_weights()
    expected = numpy_prototype_logits(support @ kernel + bias, labels, query @ kernel + bias)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    # predict: any label values, new classes, no training; nearest prototype wins.
    predicted, scores, classes = protonet.predict(
        support, ["c", "a", "b", "a", "c", "b"], query, return_scores=True
    )
    assert list(classes) == ["a", "b", "c"]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert list(predicted) == [classes[i] for i in expected.argmax(-1)]


def test_protonet_on_bert_lowers_its_episodic_loss_and_round_trips(tiny_preset, tmp_path):
    texts, labels = keyword_dataset()
    data = kt.data.from_lists(texts, labels)
    train = kt.fewshot.EpisodeSampler(data, n_way=3, k_shot=2, n_query=3, seed=0)
    held_out = kt.fewshot.EpisodeSampler(data, n_way=3, k_shot=2, n_query=3, seed=99)
    protonet = kt.fewshot.PrototypicalNetwork(tiny_encoder(tiny_preset))
    protonet.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = protonet.evaluate(held_out.dataset(num_episodes=20), verbose=0, return_dict=True)
    protonet.fit(train.dataset(), steps_per_epoch=40, epochs=1, verbose=0)
    after = protonet.evaluate(held_out.dataset(num_episodes=20), verbose=0, return_dict=True)
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert after["accuracy"] > before["accuracy"]
    # New classes from raw strings, tokenised in the graph.
    predicted = protonet.predict(
        ["the film", "a film", "love it", "i love"], ["f", "f", "l", "l"], ["film and plot", "love love"]
    )
    assert predicted.shape == (2,)
    assert_config_round_trip(protonet)
    episode = next(iter(held_out.dataset(num_episodes=1)))[0]
    assert_keras_round_trip(protonet, episode, tmp_path, atol=1e-5)


def test_protonet_rejects_bad_input(tiny_preset):
    protonet = kt.fewshot.PrototypicalNetwork(keras.layers.Dense(3))
    with pytest.raises(TypeError, match="episode dict"):
        protonet(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="one label per support"):
        protonet.predict(np.zeros((3, 2)), ["a", "b"], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="single class"):
        protonet.predict(np.zeros((2, 2)), ["a", "a"], np.zeros((1, 2)))
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling=None)
    with pytest.raises(ValueError, match="one vector per text"):
        kt.fewshot.PrototypicalNetwork(encoder)


# --- ContrastiveFinetuner --------------------------------------------------------


def test_contrastive_pairs_counts_and_targets():
    labels = np.array(["a", "a", "a", "b", "b", "c"])
    first, second, targets = kt.fewshot.contrastive_pairs(labels, num_iterations=4, seed=0)
    assert len(first) == len(second) == len(targets) == 2 * 4 * 6
    assert targets.sum() == 4 * 6  # one positive and one negative per example and round
    positive = targets == 1.0
    np.testing.assert_array_equal(labels[first[positive]], labels[second[positive]])
    assert (labels[first[~positive]] != labels[second[~positive]]).all()
    # Another example of the class when there is one; the only "c" pairs with itself.
    many = positive & (labels[first] != "c")
    assert (first[many] != second[many]).all()
    lonely = positive & (labels[first] == "c")
    assert (first[lonely] == second[lonely]).all()
    np.testing.assert_array_equal(np.bincount(first, minlength=6), np.full(6, 8))
    with pytest.raises(ValueError, match="two classes"):
        kt.fewshot.contrastive_pairs(["a", "a"])


def test_contrastive_tuning_pulls_classes_apart_on_features():
    # Two classes that differ along one direction hidden under loud noise.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 8)
    vectors = rng.normal(size=(16, 8)).astype("float32") * 3.0
    vectors[:, 0] += np.where(labels == 1, 2.0, -2.0)
    projection = keras.layers.Dense(8, kernel_initializer="identity", bias_initializer="zeros")
    setfit = kt.fewshot.ContrastiveFinetuner(
        projection, num_iterations=10, epochs=5, learning_rate=1e-2, batch_size=32
    )

    def margin():
        e = setfit.embed(vectors)
        cosine = e @ e.T
        same = labels[:, None] == labels[None, :]
        return cosine[same].mean() - cosine[~same].mean()

    before = margin()
    setfit.fit(vectors, labels)
    assert margin() > before + 0.3
    assert setfit.history["loss"][-1] < setfit.history["loss"][0]
    assert (setfit.predict(vectors) == labels).mean() == 1.0


def test_contrastive_finetuner_exports_raw_strings(tiny_preset, tmp_path):
    texts, labels = keyword_dataset(per_class=4)
    keep = [i for i, label in enumerate(labels) if label in (0, 4)]  # film vs love
    texts = [texts[i] for i in keep]
    labels = ["film" if labels[i] == 0 else "love" for i in keep]
    setfit = kt.fewshot.ContrastiveFinetuner(
        tiny_encoder(tiny_preset), num_iterations=2, learning_rate=1e-3, seed=1
    )
    with pytest.raises(RuntimeError, match="not fitted"):
        setfit.predict(texts)
    setfit.fit(texts, labels)
    assert setfit.class_names == ["film", "love"]
    probabilities = setfit.predict_proba(texts)
    assert probabilities.shape == (8, 2)
    # The Keras model (encoder -> normalise -> head) answers like predict_proba.
    logits = kt.predict(setfit.model, texts, raw=True)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probabilities, atol=1e-5)
    assert_export_answers_in_fresh_process(
        setfit.model, texts, tmp_path, labels=setfit.class_names,
        expected_probabilities=probabilities, atol=1e-5,
    )
