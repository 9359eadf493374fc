"""kt.tasks.SentenceSimilarity: text pairs in, cosine similarity out; embed; export."""

import numpy as np

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_task_contract
from harness import assert_task_export_answers_in_fresh_process

SEQUENCE_LENGTH = 16
BERT_WEIGHTS = 5 + 2 * 16 + 2
PAIRS = (["a great film", "love it"], ["a good movie", "the plot is dull and boring"])


def test_contract_and_fresh_process_export(tiny_preset, tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        return kt.tasks.SentenceSimilarity.from_preset(tiny_preset, sequence_length=SEQUENCE_LENGTH)

    task, loaded = assert_task_contract(
        make, PAIRS, [1.0, 0.0], (2,),
        num_trainable_weights=BERT_WEIGHTS - 2, num_non_trainable_weights=2, tmp_path=tmp_path,
        export=False,
    )
    a, b = PAIRS
    assert_task_export_answers_in_fresh_process(
        task, {"serving_default": {"text_a": a, "text_b": b}, "embed": a + b}, tmp_path,
        signatures=["serving_default", "embed"],
    )
    # predict is the cosine of the embeddings; embed() is what the export's "embed" serves.
    ea, eb = task.embed(a, verbose=0), task.embed(b, verbose=0)
    np.testing.assert_allclose(task.predict(PAIRS, verbose=0), (ea * eb).sum(-1), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ea, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(loaded.predict(PAIRS, verbose=0), task.predict(PAIRS, verbose=0), atol=1e-6)


def test_training_pulls_paraphrases_together_and_wraps_a_siamese_encoder(tiny_preset):
    keras.utils.set_random_seed(0)
    sim = kt.tasks.SentenceSimilarity.from_preset(tiny_preset, sequence_length=16)
    pairs = [("the film", "a film"), ("the movie", "a movie"), ("the plot", "a plot"),
             ("the film", "the plot"), ("a movie", "a plot"), ("the acting", "a film")]
    targets = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    sim.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = sim.evaluate(x=pairs * 8, y=targets * 8, verbose=0)
    sim.fit(x=pairs * 8, y=targets * 8, batch_size=16, epochs=6, verbose=0)
    after = sim.evaluate(x=pairs * 8, y=targets * 8, verbose=0)
    assert after < 0.5 * before, (before, after)
    # A dataset of ((a, b), score) works too.
    dataset = tf.data.Dataset.from_tensor_slices(((list(PAIRS[0]), list(PAIRS[1])), [1.0, 0.0]))
    assert np.isfinite(sim.evaluate(dataset, verbose=0))
    # The old SiameseEncoder wraps, sharing its encoder.
    siamese = kt.models.SiameseEncoder(sim.encoder)
    wrapped = kt.tasks.SentenceSimilarity.from_model(siamese)
    assert wrapped.encoder is sim.encoder
    np.testing.assert_allclose(wrapped.predict(PAIRS, verbose=0), sim.predict(PAIRS, verbose=0), atol=1e-6)
    features = siamese.preprocessor((tf.constant(PAIRS[0]), tf.constant(PAIRS[1])))
    np.testing.assert_allclose(siamese(features), sim.predict(PAIRS, verbose=0), atol=1e-5)
