"""This machine's TensorFlow matmul rate, float32 and bfloat16, in GFLOP/s.

The physical limit that `benchmarks/finetune.py` reports (`--gflops`) is this
machine's float32 matmul rate divided by the cost of a training token; this
script measures that rate, for a large square product and for the products
of a MiniLM training step (a batch of 32 sentences of 16 tokens = 512 rows,
hidden 384, feed-forward 1536). Run it right before a benchmark: on a shared
or throttled machine the rate moves between runs, and with it every
throughput figure.

Prints ONE JSON line.

    python benchmarks/matmul_peak.py
    python benchmarks/matmul_peak.py --seconds 5
"""

import argparse
import json
import os
import time

SHAPES = {  # name: (rows, inner, columns)
    "square_2048": (2048, 2048, 2048),
    "minilm_ffn_in": (512, 384, 1536),
    "minilm_ffn_out": (512, 1536, 384),
    "minilm_projection": (512, 384, 384),
}


def rate(tf, dtype, rows, inner, columns, seconds):
    """Best GFLOP/s over repeated timed batches of calls, after a warm-up."""
    a = tf.cast(tf.random.normal((rows, inner), seed=0), dtype)
    b = tf.cast(tf.random.normal((inner, columns), seed=1), dtype)
    product = tf.function(lambda: tf.matmul(a, b))
    product().numpy()  # trace and warm up
    flop = 2.0 * rows * inner * columns
    calls = max(1, int(2e9 / flop))  # about 2 GFLOP per timed batch
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            result = product()
        result.numpy()  # wait for the last call
        best = max(best, calls * flop / (time.perf_counter() - start) / 1e9)
    return round(best, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per shape and dtype")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    figures = {"benchmark": "matmul_peak", "cpu_count": os.cpu_count()}
    for dtype in (tf.float32, tf.bfloat16):
        figures[dtype.name] = {
            name: rate(tf, dtype, *shape, args.seconds) for name, shape in SHAPES.items()
        }
    figures["bfloat16_over_float32"] = {
        name: round(figures["bfloat16"][name] / figures["float32"][name], 2) for name in SHAPES
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
