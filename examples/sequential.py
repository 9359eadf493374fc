"""Fine-tune MiniLM with `keras.Sequential([encoder, head])`, then export.

    python examples/sequential.py            # ~2 minutes on 2 CPU cores
"""

import os

import keras

import ktransfer as kt

HERE = os.path.dirname(os.path.abspath(__file__))

train = kt.data.from_tsv(os.path.join(HERE, "data", "sst2_train_sample.tsv"), text="sentence", label="label")
dev = kt.data.from_tsv(os.path.join(HERE, "data", "sst2_dev.tsv"), text="sentence", label="label")

encoder = kt.encoders.BertEncoder.from_preset(
    "minilm",  # or a KerasHub preset name/folder, or a Hugging Face BERT folder
    sequence_length=128,
    trainable=True,  # False: feature extraction; int k: only the top k blocks
    pooling="mean",  # MiniLM was trained for mean pooling
)
model = keras.Sequential([encoder, kt.heads.ClassificationHead(num_classes=2, dropout=0.1)])

train = kt.data.prepare(train.take(3000), encoder.preprocessor, batch_size=32, shuffle=True, seed=0)
dev = kt.data.prepare(dev, encoder.preprocessor, batch_size=64)
model.compile(
    optimizer=keras.optimizers.AdamW(5e-5),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(train, validation_data=dev, epochs=1)

print(kt.predict(model, ["a great film", "a dull , lifeless film"]))
kt.export.save(model, "saved_models/sst2_sequential/1", labels=["negative", "positive"], overwrite=True)
