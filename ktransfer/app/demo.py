"""The main job on an embedded default: fine-tune MiniLM on SST-2, evaluate, export.

Run with `ktransfer demo` (or `python -m ktransfer.demo`). It fine-tunes the
real all-MiniLM-L6-v2 checkpoint on the SST-2 sample shipped in
`examples/data/` (see its README for source and licence), prints accuracy
on the 872 SST-2 dev sentences, exports a TF Serving SavedModel to
`saved_models/sst2_minilm/1/`, and queries that export with two sentences.
"""

import argparse
import os
import sys
import time

# The repository's examples/data (ktransfer/app/demo.py -> three levels up).
EXAMPLES_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "examples", "data",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ktransfer demo",
        description="Fine-tune MiniLM on an SST-2 sample, evaluate on SST-2 dev, export, query.",
    )
    parser.add_argument("--train", default=os.path.join(EXAMPLES_DATA, "sst2_train_sample.tsv"))
    parser.add_argument("--dev", default=os.path.join(EXAMPLES_DATA, "sst2_dev.tsv"))
    parser.add_argument("--preset", default="minilm", help="BERT preset or folder (default: minilm)")
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--export", default=os.path.join("saved_models", "sst2_minilm", "1"))
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ktransfer.app.quiet import quiet_tensorflow

    tf = quiet_tensorflow()
    import keras

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    if args.preset in kt.assets.ASSETS and not kt.assets.is_cached(args.preset):
        print(f"Fetching the {args.preset} checkpoint (once) ...", flush=True)
        kt.assets.fetch(args.preset)

    train = kt.data.from_tsv(args.train, text="sentence", label="label", class_names=["0", "1"])
    dev = kt.data.from_tsv(args.dev, text="sentence", label="label", class_names=["0", "1"])
    if args.train_size:
        train = train.take(args.train_size)
    print(f"Training on {int(train.cardinality())} SST-2 sentences, evaluating on "
          f"{int(dev.cardinality())} dev sentences.", flush=True)

    encoder = kt.encoders.BertEncoder.from_preset(
        args.preset, sequence_length=args.sequence_length, pooling="mean", trainable=True
    )
    head = kt.heads.ClassificationHead(num_classes=2, dropout=0.1)
    model = keras.Sequential([encoder, head])

    train_batches = kt.data.prepare(
        train, encoder.preprocessor, batch_size=args.batch_size, shuffle=True, seed=args.seed
    )
    dev_batches = kt.data.prepare(dev, encoder.preprocessor, batch_size=64)
    steps = int(train_batches.cardinality()) * args.epochs
    schedule = keras.optimizers.schedules.PolynomialDecay(
        args.learning_rate, decay_steps=steps, end_learning_rate=0.0
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01),
        loss=head.default_loss(),
        metrics=["accuracy"],
    )
    start = time.time()
    # `prepare` shuffles (seeded); shuffle=False keeps Keras from warning that it ignores it.
    model.fit(train_batches, epochs=args.epochs, shuffle=False, verbose=1)
    seconds = time.time() - start
    examples = int(train.cardinality()) * args.epochs
    print(f"Trained in {seconds:.0f} s ({examples / seconds:.1f} examples/s).")
    _, accuracy = model.evaluate(dev_batches, verbose=0)
    print(f"SST-2 dev accuracy: {accuracy:.4f}", flush=True)

    path = kt.export.save(
        model, args.export, labels=["negative", "positive"], overwrite=True
    )
    print(f"Exported a TF Serving SavedModel to {path}")

    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    serve = tf.saved_model.load(path).signatures["serving_default"]
    queries = [
        "a gripping , beautifully acted film that stays with you .",
        "a tedious mess with nothing new to say .",
    ]
    answer = serve(text=tf.constant(queries))
    for text, label, scores in zip(
        queries, answer["label"].numpy(), answer["probabilities"].numpy()
    ):
        print(f"  {label.decode():8s} p={scores.max():.3f}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
