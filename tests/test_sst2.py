"""Fine-tuning the real MiniLM on real SST-2 sentences, exported and served."""

import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import serve_in_fresh_process

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_fine_tuned_minilm_beats_chance_and_serves_raw_strings(minilm_path, shared_data, tmp_path):
    sst2 = os.path.join(shared_data, "sst2")
    train = kt.data.from_tsv(os.path.join(sst2, "train.tsv"), text="sentence", label="label")
    dev = kt.data.from_tsv(os.path.join(sst2, "dev.tsv"), text="sentence", label="label")
    encoder = kt.encoders.BertEncoder.from_preset(minilm_path, sequence_length=64, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2, dropout=0.1)])
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=model.layers[1].default_loss(),
        metrics=["accuracy"],
    )
    train_batches = kt.data.prepare(
        train.shuffle(70_000, seed=0).take(1200), encoder.preprocessor, batch_size=32, shuffle=True, seed=0
    )
    model.fit(train_batches, epochs=1, verbose=0)
    dev_batches = kt.data.prepare(dev.take(300), encoder.preprocessor, batch_size=64)
    _, accuracy = model.evaluate(dev_batches, verbose=0)
    assert accuracy > 0.70, accuracy  # chance is 0.51 on this dev set

    texts = ["a charming and often affecting journey .", "unflinchingly bleak and desperate"]
    expected = tf.nn.softmax(kt.predict(model, texts, raw=True)).numpy()
    path = kt.export.save(model, tmp_path / "sst2" / "1", labels=["negative", "positive"])
    answer = serve_in_fresh_process(path, texts)
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-4)
    assert answer["label"] == ["positive", "negative"]
