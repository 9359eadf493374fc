"""Encoder-decoder warm start: `kt.tasks.Seq2Seq` with warm_start, shared and random decoders.

One job per `decoder_init`, all with the same architecture (the checkpoint's
encoder + a decoder of its sizes), the same seeded training subset, steps,
batch size, learning rate and seed; only how the decoder blocks start
differs (Rothe, Narayan & Severyn 2020: BERT2BERT, BERT2BERT-share,
BERT2RND). Prints ONE JSON line per job: train time, target tokens/s
(real, unpadded target tokens per second of training), generation time, and
the task's metric.

Task "dialogsum": summarise DialogSum dialogues (`../shared/data/dialogsum`,
CC BY-NC-SA 4.0, read in place) with MiniLM; ROUGE-1/2/L F1
(`kt.metrics.rouge`, rouge-score with stemming) of greedy summaries of the
test dialogues, each against its 3 reference summaries (max over them).

    nice -n 10 python benchmarks/seq2seq.py --task dialogsum --train-examples 2000
    nice -n 10 python benchmarks/seq2seq.py --train-examples 64 --test-examples 16   # smoke run
"""

import argparse
import json
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")
DIALOGSUM = os.path.join(DATA, "dialogsum")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dialogsum(train_examples, test_examples, seed):
    train = []
    for part in range(4):
        train += read_jsonl(os.path.join(DIALOGSUM, f"dialogsum.train.part{part}.jsonl"))
    random.Random(seed).shuffle(train)
    train = train[:train_examples]
    test = read_jsonl(os.path.join(DIALOGSUM, "dialogsum.test.jsonl"))[:test_examples]
    return (
        [r["dialogue"] for r in train], [r["summary"] for r in train],
        [r["dialogue"] for r in test], [[r[f"summary{k}"] for k in (1, 2, 3)] for r in test],
    )


def run_job(args, decoder_init, data):
    import numpy as np
    import keras
    import ktransfer as kt

    x, y, test_x, test_refs = data
    keras.utils.set_random_seed(args.seed)
    s2s = kt.tasks.Seq2Seq.from_preset(
        args.preset, decoder_init=decoder_init, sequence_length=args.sequence_length,
        target_length=args.target_length,
    )
    s2s.compile(optimizer=kt.optimizers.FusedAdamW(args.learning_rate))
    _, _, weights = s2s.preprocessor(y, y)
    target_tokens = float(np.sum(weights))
    start = time.perf_counter()
    history = s2s.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                      verbose=0)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    generated = s2s.generate(test_x, batch_size=args.batch_size)
    generate_seconds = time.perf_counter() - start
    scores = kt.metrics.rouge(generated, test_refs)
    return {
        "task": args.task,
        "preset": args.preset,
        "decoder_init": decoder_init,
        "train_examples": len(x),
        "test_examples": len(test_x),
        "epochs": args.epochs,
        "steps": int(np.ceil(len(x) / args.batch_size)) * args.epochs,
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "target_length": args.target_length,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "trainable_params": int(sum(np.prod(w.shape) for w in s2s.trainable_weights)),
        "train_seconds": round(train_seconds, 1),
        "target_tokens_per_second": round(target_tokens * args.epochs / train_seconds, 1),
        "final_loss": round(float(history.history["loss"][-1]), 4),
        "generate_seconds": round(generate_seconds, 1),
        "rouge1": round(scores["rouge1"], 2),
        "rouge2": round(scores["rouge2"], 2),
        "rougeL": round(scores["rougeL"], 2),
        "example": generated[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="dialogsum", choices=["dialogsum"])
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--inits", default="warm_start,shared,random")
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--test-examples", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--target-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.isdir(DIALOGSUM):
        sys.exit(f"{DIALOGSUM} not found: the DialogSum copy lives in ../shared/data/dialogsum")
    data = dialogsum(args.train_examples, args.test_examples, args.seed)
    for decoder_init in args.inits.split(","):
        print(json.dumps(run_job(args, decoder_init, data)), flush=True)


if __name__ == "__main__":
    main()
