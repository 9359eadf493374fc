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

Task "tatoeba": English -> Chinese translation of Tatoeba pairs
(`../shared/data/tatoeba_en_zh/cmn_part*.tsv`: English, Chinese, attribution;
CC BY 2.0 FR, read in place) with `multilingual-e5-small` (XLM-R SentencePiece,
250k pieces) whose vocabulary is trimmed to the train and test source and
target texts (`Seq2Seq.from_preset(..., trim_texts=...)`), so that the tied
output projection is a few thousand rows, not 250k. `--test-examples` pairs
(1,000) are held out by a seeded shuffle of all 29,155; the training subset is
the first `--train-examples` of the rest. BLEU with sacrebleu's `zh` tokeniser
(`kt.metrics.bleu(..., tokenize="zh")`) and chrF (`kt.metrics.chrf`).

Task "xdailydialog": response generation on the English side of XDailyDialog's
1,000 DailyDialog dialogues (`../shared/data/xdailydialog_1k`, CC BY-NC-SA
4.0, read in place) with MiniLM. A dialogue is its utterances (`__eou__`
separated); each utterance after the first is a target, its source the
`--context-turns` utterances before it joined by " | ". Dialogues (not pairs)
are split with a seed: `--test-dialogues` of them are held out. BLEU-1 / BLEU-2
(sacrebleu's corpus BLEU with `max_ngram_order` 1 / 2, lowercased, `13a`) and
distinct-1 / distinct-2 (`kt.metrics.distinct`) of the greedy replies.

`--export-check N` (default 100): after the warm_start job, its SavedModel
(`export`) answers the first N test sources in a fresh interpreter
(TensorFlow + tensorflow_text only), in the batches `generate` used; the job
reports `export_equals_generate` (every answer equals `generate`'s greedy
text) and the count (0 skips the check).

    nice -n 10 python benchmarks/seq2seq.py --task dialogsum --train-examples 2000
    nice -n 10 python benchmarks/seq2seq.py --task tatoeba --train-examples 5000
    nice -n 10 python benchmarks/seq2seq.py --task xdailydialog
    nice -n 10 python benchmarks/seq2seq.py --task tatoeba --train-examples 32 \
        --test-examples 8 --export-check 4      # smoke run
"""

import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")
DIALOGSUM = os.path.join(DATA, "dialogsum")
TATOEBA = os.path.join(DATA, "tatoeba_en_zh")
XDAILYDIALOG = os.path.join(DATA, "xdailydialog_1k")
# Per task: the checkpoint and the source / target lengths (flags override them).
TASK_DEFAULTS = {
    "dialogsum": {"preset": "minilm", "sequence_length": 128, "target_length": 64,
                  "train_examples": 2000, "test_examples": 500},
    "tatoeba": {"preset": "multilingual-e5-small", "sequence_length": 32, "target_length": 32,
                "train_examples": 5000, "test_examples": 1000},
    "xdailydialog": {"preset": "minilm", "sequence_length": 96, "target_length": 32,
                     "train_examples": 100000, "test_examples": 500},
}


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


def tatoeba(train_examples, test_examples, seed):
    """`(train_en, train_zh, test_en, test_zh)`: a seeded hold-out of `test_examples` pairs."""
    pairs = []
    for path in sorted(glob.glob(os.path.join(TATOEBA, "cmn_part*.tsv"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                columns = line.rstrip("\n").split("\t")
                if len(columns) >= 2 and columns[0] and columns[1]:
                    pairs.append((columns[0], columns[1]))  # column 3: the attribution
    random.Random(seed).shuffle(pairs)
    test, train = pairs[:test_examples], pairs[test_examples:][:train_examples]
    return [e for e, _ in train], [z for _, z in train], [e for e, _ in test], [z for _, z in test]


def dialogue_pairs(dialogues, context_turns):
    """`(contexts, replies)`: every utterance after the first, after its `context_turns` turns."""
    contexts, replies = [], []
    for utterances in dialogues:
        for i in range(1, len(utterances)):
            contexts.append(" | ".join(utterances[max(0, i - context_turns):i]))
            replies.append(utterances[i])
    return contexts, replies


def xdailydialog(train_examples, test_examples, seed, test_dialogues=100, context_turns=3):
    """`(train_contexts, train_replies, test_contexts, test_replies)`, split by dialogue."""
    with open(os.path.join(XDAILYDIALOG, "dialogues_text_En.txt"), encoding="utf-8") as f:
        dialogues = [[u.strip() for u in line.split("__eou__") if u.strip()]
                     for line in f if line.strip()]
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    test = [dialogues[i] for i in order[:test_dialogues]]
    train = [dialogues[i] for i in order[test_dialogues:]]
    x, y = dialogue_pairs(train, context_turns)
    pairs = list(zip(x, y))
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:train_examples]
    test_x, test_y = dialogue_pairs(test, context_turns)
    return ([p[0] for p in pairs], [p[1] for p in pairs], test_x[:test_examples],
            test_y[:test_examples])


SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer ops)
request = json.loads(sys.stdin.read())
serve = tf.saved_model.load(request["path"]).signatures["serving_default"]
answers = []
for batch in request["batches"]:
    answers += [t.decode("utf-8") for t in serve(text=tf.constant(batch))["generated"].numpy()]
print(json.dumps({"answers": answers, "foreign": sorted(m for m in ("keras_hub", "ktransfer")
                                                        if m in sys.modules)}))
"""


def export_check(s2s, texts, generated, batch_size):
    """Export `s2s`; its answers to `texts` in a fresh interpreter, against `generated`."""
    with tempfile.TemporaryDirectory() as folder:
        path = s2s.export(os.path.join(folder, "s2s", "1"))
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(
            [sys.executable, "-c", SERVE], input=json.dumps({"path": path, "batches": batches}),
            capture_output=True, text=True, env=env, cwd="/", timeout=1800,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the export did not answer: {result.stderr[-2000:]}")
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    mismatches = [i for i, (a, b) in enumerate(zip(reply["answers"], generated)) if a != b]
    return {
        "export_equals_generate": not mismatches and len(reply["answers"]) == len(generated),
        "export_check_count": len(texts),
        "export_mismatches": len(mismatches),
        "export_foreign_modules": reply["foreign"],
    }


def scores(task, kt, generated, references):
    if task == "dialogsum":
        result = kt.metrics.rouge(generated, references)
        return {key: round(result[key], 2) for key in ("rouge1", "rouge2", "rougeL")}
    if task == "tatoeba":
        bleu = kt.metrics.bleu(generated, references, tokenize="zh")
        chrf = kt.metrics.chrf(generated, references)
        return {"bleu": round(bleu["score"], 2), "chrf": round(chrf["score"], 2),
                "bleu_signature": bleu["signature"]}
    bleu1 = kt.metrics.bleu(generated, references, lowercase=True, max_ngram_order=1)
    bleu2 = kt.metrics.bleu(generated, references, lowercase=True, max_ngram_order=2)
    distinct = kt.metrics.distinct(generated, orders=(1, 2))
    return {"bleu1": round(bleu1["score"], 2), "bleu2": round(bleu2["score"], 2),
            "distinct1": round(distinct["distinct1"], 2),
            "distinct2": round(distinct["distinct2"], 2),
            "bleu_signature": bleu2["signature"]}


def run_job(args, decoder_init, data):
    import numpy as np
    import keras
    import ktransfer as kt

    x, y, test_x, test_refs = data
    keras.utils.set_random_seed(args.seed)
    # Tatoeba: e5's 250k pieces trimmed to the corpus (sources and targets, train and test).
    trim_texts = None
    if args.task == "tatoeba":
        trim_texts = list(x) + list(y) + list(test_x) + list(test_refs)
    s2s = kt.tasks.Seq2Seq.from_preset(
        args.preset, decoder_init=decoder_init, sequence_length=args.sequence_length,
        target_length=args.target_length, trim_texts=trim_texts,
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
    result = {
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
        "vocabulary_rows": int(s2s.encoder.vocabulary_size),
        "trainable_params": int(sum(np.prod(w.shape) for w in s2s.trainable_weights)),
        "train_seconds": round(train_seconds, 1),
        "target_tokens_per_second": round(target_tokens * args.epochs / train_seconds, 1),
        "final_loss": round(float(history.history["loss"][-1]), 4),
        "generate_seconds": round(generate_seconds, 1),
        **scores(args.task, kt, generated, test_refs),
        "example": generated[0],
        "example_source": test_x[0][:200],
    }
    if decoder_init == "warm_start" and args.export_check > 0:
        count = min(args.export_check, len(test_x))
        start = time.perf_counter()
        result.update(export_check(s2s, list(test_x[:count]), generated[:count], args.batch_size))
        result["export_check_seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="dialogsum", choices=sorted(TASK_DEFAULTS))
    parser.add_argument("--preset", default=None,
                        help="default: minilm (dialogsum, xdailydialog), "
                        "multilingual-e5-small (tatoeba)")
    parser.add_argument("--inits", default="warm_start,shared,random")
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--test-examples", type=int, default=None)
    parser.add_argument("--test-dialogues", type=int, default=100,
                        help="xdailydialog: dialogues held out for test")
    parser.add_argument("--context-turns", type=int, default=3,
                        help="xdailydialog: utterances before the reply in its source")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=None)
    parser.add_argument("--target-length", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-check", type=int, default=100,
                        help="test sources the warm_start export answers (0: no check)")
    args = parser.parse_args(argv)
    for key, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    folder = {"dialogsum": DIALOGSUM, "tatoeba": TATOEBA, "xdailydialog": XDAILYDIALOG}[args.task]
    if not os.path.isdir(folder):
        sys.exit(f"{folder} not found: the {args.task} copy lives in ../shared/data")
    if args.task == "dialogsum":
        data = dialogsum(args.train_examples, args.test_examples, args.seed)
    elif args.task == "tatoeba":
        data = tatoeba(args.train_examples, args.test_examples, args.seed)
    else:
        data = xdailydialog(args.train_examples, args.test_examples, args.seed,
                            test_dialogues=args.test_dialogues, context_turns=args.context_turns)
    for decoder_init in args.inits.split(","):
        print(json.dumps(run_job(args, decoder_init, data), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
