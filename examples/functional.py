"""Compose the encoder with a functional head: two layers on mean-pooled MiniLM.

    python examples/functional.py            # ~2 minutes on 2 CPU cores
"""

import os

import keras

import ktransfer as kt

HERE = os.path.dirname(os.path.abspath(__file__))

encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=128, pooling="mean", trainable=2)

inputs = {
    "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
    "segment_ids": keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
    "padding_mask": keras.Input(shape=(None,), dtype="bool", name="padding_mask"),
}
features = encoder(inputs)
hidden = keras.layers.Dense(128, activation="gelu")(features)
outputs = kt.heads.ClassificationHead(num_classes=2, dropout=0.1)(hidden)
model = keras.Model(inputs, outputs)

train = kt.data.from_tsv(os.path.join(HERE, "data", "sst2_train_sample.tsv"), text="sentence", label="label")
dev = kt.data.from_tsv(os.path.join(HERE, "data", "sst2_dev.tsv"), text="sentence", label="label")
train = kt.data.prepare(train.take(3000), encoder.preprocessor, batch_size=32, shuffle=True, seed=0)
dev = kt.data.prepare(dev, encoder.preprocessor, batch_size=64)

model.compile(
    optimizer=keras.optimizers.AdamW(1e-4),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(train, validation_data=dev, epochs=1)
kt.export.save(
    model, "saved_models/sst2_functional/1", preprocessor=encoder.preprocessor,
    labels=["negative", "positive"], overwrite=True,
)
