"""float32 vs mixed_bfloat16 (vs mixed_float16) fine-tuning speed of MiniLM via kt.train.

Prints ONE JSON line: examples/s and final training loss per precision, plus
SST-2 dev accuracy, all measured in the same run on the same data.

    python benchmarks/mixed_precision.py --train-size 1024 --precisions float32 mixed_bfloat16
"""

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import ktransfer as kt

    results = {"train_size": args.train_size, "batch_size": args.batch_size}
    for precision in args.precisions:
        with tempfile.TemporaryDirectory() as folder:
            timer = {}

            import keras

            class Clock(keras.callbacks.Callback):
                def on_train_begin(self, logs=None):
                    timer["start"] = time.perf_counter()

                def on_train_end(self, logs=None):
                    timer["seconds"] = time.perf_counter() - timer["start"]

            run = kt.train(
                encoder={"preset": "minilm", "sequence_length": args.sequence_length,
                         "pooling": "mean"},
                task={"labels": ["negative", "positive"]},
                data={"train": os.path.join(REPO, "examples/data/sst2_train_sample.tsv"),
                      "validation": os.path.join(REPO, "examples/data/sst2_dev.tsv"),
                      "text": "sentence", "limit": args.train_size},
                training={"epochs": 1, "batch_size": args.batch_size, "precision": precision,
                          "output": os.path.join(folder, "run"), "tensorboard": False},
                callbacks=[Clock()],
                verbose=0,
            )
            results[precision] = {
                "examples_per_s": round(args.train_size / timer["seconds"], 1),
                "train_seconds": round(timer["seconds"], 1),
                "loss": round(run.history["loss"][-1], 4),
                "dev_accuracy": round(run.metrics["validation"]["accuracy"], 4),
            }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
