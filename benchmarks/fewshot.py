"""Few-shot learning on CLINC150 intents and SST-2 (`kt.fewshot`).

CLINC150 (../shared/data/clinc150, the 150 in-scope intents; `oos`, label
150, dropped). The 10 domains (15 intents each) are split with a seeded
permutation (seed 0) into 7 meta-train domains (105 intents) and 3 meta-test
domains (45 intents), so meta-test intents share no domain with training.
Meta-train episodes draw from the `train.tsv` queries of the meta-train
intents (the first `--train-per-intent` of each, default 40); meta-test
episodes draw from the `test.tsv` queries (30 per intent) of the meta-test
intents. Every method is scored on the same `--episodes` (default 200)
5-way K-shot episodes (K = 1 and 5, 15 queries per class; EpisodeSampler
seed 1): mean accuracy and 95% interval (1.96 standard errors).

Frozen MiniLM (all-MiniLM-L6-v2, mean pooling, sequence_length 32) embeds
every text once (`kt.strategies.cache_features`); the methods then run on
the cached vectors:

- frozen_prototype: `PrototypicalNetwork(keras.layers.Identity())`, no
  training: nearest class mean (squared Euclidean), and `frozen_cosine` the
  same with `normalize=True`;
- protonet: `PrototypicalNetwork(Sequential([UnitNormalization(),
  Dense(384, identity init)]))` trained on meta-train episodes (20-way as
  Snell et al. recommend training with more ways than testing, K-shot, 15
  queries; `--proto-steps` episodes, Adam 1e-3): a linear projection of the
  L2-normalised frozen features is what trains (it starts as
  `frozen_cosine`);
- protonet_bert (`--protonet-bert-steps`, default 150): the public
  `PrototypicalNetwork(BertEncoder(..., trainable=1))` end to end on raw
  strings: MiniLM's top transformer block trained on 150 5-way 5-shot 5-query
  meta-train episodes (Adam 1e-5), then the meta-test texts embedded once by
  the trained encoder and scored on the same episodes (squared Euclidean,
  and cosine);
- frozen_logreg: SetFit's head alone (logistic regression on L2-normalised
  frozen vectors; `ContrastiveFinetuner(..., epochs=0)`);
- contrastive: `ContrastiveFinetuner` per episode on a Dense(384,
  identity init) projection of the cached vectors, reset before each episode (SetFit pairs, 20
  iterations, 1 epoch, batch 16, Adam 1e-3), then the logistic-regression
  head.

SST-2 (../shared/data/sst2): N = 8 and 64 labelled sentences per class,
drawn (seeded) from the train rows with at least 6 words (most train rows
are short phrases; dev rows are sentences), scored on the 872 dev sentences:

- contrastive: full SetFit, `ContrastiveFinetuner` fine-tuning all of
  MiniLM (mean pooling, sequence_length 64) on contrastive pairs (20
  iterations, at most `--max-pairs` pairs, 1 epoch, batch 16, Adam 2e-5),
  then logistic regression on its embeddings;
- finetune: `BertEncoder` (same MiniLM, mean pooling) +
  `ClassificationHead(2)` fine-tuned on the same sentences with
  cross-entropy (batch 8, Adam 2e-5, `--ft-epochs` epochs);
- frozen_logreg: logistic regression on frozen MiniLM embeddings (no
  encoder training).

It prints ONE JSON line with every figure and the seconds each part took.

    python benchmarks/fewshot.py            # full run
    python benchmarks/fewshot.py --quick    # 50 episodes, 1 SST-2 seed, 8 per class
"""

import argparse
import json
import os
import sys
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
OOS = 150


def interval(accuracies):
    import numpy as np

    values = np.asarray(accuracies, dtype="float64")
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": round(float(values.mean()), 4), "ci95": round(float(half), 4), "n": len(values)}


def read_tsv(path):
    import ktransfer as kt

    rows = kt.data.from_tsv(path, text="sentence", label="label").as_numpy_iterator()
    return [(text.decode("utf-8"), int(label)) for text, label in rows]


# --------------------------------------------------------------------------
# CLINC150
# --------------------------------------------------------------------------


def clinc_split(seed=0, test_domains=3):
    """(meta-train intent ids, meta-test intent ids, meta-test domain names)."""
    import numpy as np

    intents = {}
    with open(os.path.join(SHARED, "clinc150", "labels.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            label, _, domain = line.rstrip("\n").split("\t")
            if int(label) != OOS:
                intents.setdefault(domain, []).append(int(label))
    domains = sorted(intents)
    order = np.random.default_rng(seed).permutation(len(domains))
    test = [domains[i] for i in order[:test_domains]]
    train_ids = sorted(i for d in domains if d not in test for i in intents[d])
    test_ids = sorted(i for d in test for i in intents[d])
    return train_ids, test_ids, sorted(test)


def clinc_features(encoder, train_per_intent):
    """Cached frozen features: meta-train candidates (train.tsv) and test.tsv rows."""
    import ktransfer as kt

    train_rows, counts = [], {}
    for text, label in read_tsv(os.path.join(SHARED, "clinc150", "train.tsv")):
        if label != OOS and counts.get(label, 0) < train_per_intent:
            counts[label] = counts.get(label, 0) + 1
            train_rows.append((text, label))
    test_rows = [r for r in read_tsv(os.path.join(SHARED, "clinc150", "test.tsv")) if r[1] != OOS]
    cached = {}
    for name, rows in (("train", train_rows), ("test", test_rows)):
        texts, labels = zip(*rows)
        cached[name] = kt.strategies.cache_features(
            encoder, kt.data.from_lists(list(texts), list(labels))
        )
    return cached


def vectors_of(dataset, classes):
    """(vectors, labels) numpy arrays of a cached dataset, kept to `classes`."""
    import numpy as np

    vectors, labels = [], []
    for v, y in dataset.batch(4096).as_numpy_iterator():
        vectors.append(v)
        labels.append(y)
    vectors, labels = np.concatenate(vectors), np.concatenate(labels)
    keep = np.isin(labels, classes)
    return vectors[keep], labels[keep]


def episodes_on(vectors, labels, k_shot, n_query, seed, num_episodes=None, n_way=5):
    import tensorflow as tf

    import ktransfer as kt

    data = tf.data.Dataset.from_tensor_slices((vectors, labels.astype("int32")))
    return kt.fewshot.EpisodeSampler(
        data, n_way=n_way, k_shot=k_shot, n_query=n_query, seed=seed, num_episodes=num_episodes
    )


def protonet_accuracies(protonet, sampler):
    import numpy as np
    import tensorflow as tf

    score = tf.function(lambda inputs: protonet(inputs, training=False))
    accuracies = []
    for inputs, query_labels in sampler.dataset():
        predicted = np.argmax(score(inputs), axis=-1)
        accuracies.append(float(np.mean(predicted == query_labels.numpy())))
    return accuracies


def identity_projection(dim):
    import keras

    return keras.layers.Dense(dim, kernel_initializer="identity", bias_initializer="zeros")


def setfit_accuracies(sampler, vectors, num_episodes, epochs):
    """Per-episode SetFit on an identity-initialised projection of `vectors`.

    One `ContrastiveFinetuner` serves every episode: the projection is reset
    to the identity before each, and `fit` restarts Adam, so each episode
    starts from the frozen features as a fresh run would (and the compiled
    train step is reused).
    """
    import numpy as np

    import ktransfer as kt

    projection = identity_projection(vectors.shape[1])
    projection.build((None, vectors.shape[1]))
    initial = projection.get_weights()
    setfit = kt.fewshot.ContrastiveFinetuner(
        projection, num_iterations=20, epochs=epochs, batch_size=16, learning_rate=1e-3
    )
    accuracies = []
    for i in range(num_episodes):
        support, query, _ = sampler.episode_indices(i)
        n_way, k = support.shape
        support_labels = np.repeat(np.arange(n_way), k)
        query_labels = np.repeat(np.arange(n_way), query.shape[1])
        projection.set_weights(initial)
        setfit.seed = i
        setfit.fit(vectors[support.reshape(-1)], support_labels)
        predicted = setfit.predict(vectors[query.reshape(-1)])
        accuracies.append(float(np.mean(predicted == query_labels)))
    return accuracies


def run_clinc(args, result):
    import keras

    import ktransfer as kt

    started = time.perf_counter()
    encoder = kt.encoders.BertEncoder.from_preset(
        "minilm", sequence_length=32, pooling="mean", trainable=False
    )
    train_ids, test_ids, test_domains = clinc_split()
    cached = clinc_features(encoder, args.train_per_intent)
    train_x, train_y = vectors_of(cached["train"], train_ids)
    test_x, test_y = vectors_of(cached["test"], test_ids)
    clinc = {
        "split": {
            "meta_test_domains": test_domains,
            "meta_train_intents": len(train_ids),
            "meta_test_intents": len(test_ids),
            "meta_train_texts": len(train_y),
            "meta_test_texts": len(test_y),
        },
        "seconds_features": round(time.perf_counter() - started, 1),
    }
    dim = train_x.shape[1]
    for k_shot in (1, 5):
        setting = {}
        evaluate = episodes_on(test_x, test_y, k_shot, 15, seed=1, num_episodes=args.episodes)
        t = time.perf_counter()
        for name, normalize in (("frozen_prototype", False), ("frozen_cosine", True)):
            frozen = kt.fewshot.PrototypicalNetwork(keras.layers.Identity(), normalize=normalize)
            setting[name] = interval(protonet_accuracies(frozen, evaluate))
        t_proto = time.perf_counter()
        keras.utils.set_random_seed(0)
        projection = keras.Sequential([keras.layers.UnitNormalization(), identity_projection(dim)])
        protonet = kt.fewshot.PrototypicalNetwork(projection)
        protonet.compile(optimizer=keras.optimizers.Adam(1e-3))
        train = episodes_on(train_x, train_y, k_shot, 15, seed=0, n_way=args.proto_way)
        history = protonet.fit(
            train.dataset(), steps_per_epoch=args.proto_steps, epochs=1, verbose=0
        ).history
        setting["protonet"] = interval(protonet_accuracies(protonet, evaluate))
        setting["protonet"]["train_loss_mean"] = round(float(history["loss"][-1]), 4)
        setting["seconds_protonet"] = round(time.perf_counter() - t_proto, 1)
        t = time.perf_counter()
        setting["frozen_logreg"] = interval(
            setfit_accuracies(evaluate, test_x, args.episodes, epochs=0)
        )
        setting["seconds_frozen_logreg"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        contrastive_episodes = args.contrastive_episodes or args.episodes
        setting["contrastive"] = interval(
            setfit_accuracies(evaluate, test_x, contrastive_episodes, epochs=1)
        )
        setting["seconds_contrastive"] = round(time.perf_counter() - t, 1)
        clinc[f"5way_{k_shot}shot"] = setting
        print(f"# clinc {k_shot}-shot {json.dumps(setting)}", file=sys.stderr, flush=True)
    result["clinc150"] = clinc


def run_protonet_bert(args, result):
    """ProtoNet end to end on strings: MiniLM's top block trained on meta-train episodes.

    5-way 5-shot 5-query episodes of the meta-train intents' train.tsv
    queries (all 100 per intent), Adam `--protonet-bert-lr`; then the
    meta-test texts are embedded once by the trained encoder and scored on
    the same 5-way episodes as the other methods.
    """
    import keras

    import ktransfer as kt

    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(
        "minilm", sequence_length=32, pooling="mean", trainable=1
    )
    train_ids, test_ids, _ = clinc_split()
    rows = read_tsv(os.path.join(SHARED, "clinc150", "train.tsv"))
    texts, labels = zip(*[r for r in rows if r[1] in set(train_ids)])
    sampler = kt.fewshot.EpisodeSampler(
        kt.data.from_lists(list(texts), list(labels)), n_way=5, k_shot=5, n_query=5, seed=0
    )
    protonet = kt.fewshot.PrototypicalNetwork(encoder, normalize=False)
    protonet.compile(optimizer=keras.optimizers.Adam(args.protonet_bert_lr))
    history = protonet.fit(
        sampler.dataset(), steps_per_epoch=args.protonet_bert_steps, epochs=1, verbose=0
    ).history
    trained = time.perf_counter() - started
    # Score: embed the meta-test texts once with the trained encoder, then the same episodes.
    test = [r for r in read_tsv(os.path.join(SHARED, "clinc150", "test.tsv")) if r[1] in set(test_ids)]
    import numpy as np

    vectors = protonet.embed([t for t, _ in test])
    test_y = np.asarray([y for _, y in test])
    scores = {"trained": "top transformer block of MiniLM (trainable=1), squared Euclidean",
              "steps": args.protonet_bert_steps, "learning_rate": args.protonet_bert_lr,
              "train_loss_mean": round(float(history["loss"][-1]), 4)}
    for k_shot in (1, 5):
        evaluate = episodes_on(vectors, test_y, k_shot, 15, seed=1, num_episodes=args.episodes)
        for name, normalize in (("protonet_bert", False), ("protonet_bert_cosine", True)):
            scorer = kt.fewshot.PrototypicalNetwork(keras.layers.Identity(), normalize=normalize)
            scores[f"5way_{k_shot}shot_{name}"] = interval(protonet_accuracies(scorer, evaluate))
    scores["seconds_train"] = round(trained, 1)
    scores["seconds_total"] = round(time.perf_counter() - started, 1)
    print(f"# protonet_bert {json.dumps(scores)}", file=sys.stderr, flush=True)
    result["clinc150_protonet_bert"] = scores


# --------------------------------------------------------------------------
# SST-2
# --------------------------------------------------------------------------


def sst2_sample(rows, per_class, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        pool = [r for r in rows if r[1] == label]
        chosen += [pool[i] for i in rng.choice(len(pool), per_class, replace=False)]
    order = rng.permutation(len(chosen))
    return [chosen[i][0] for i in order], [chosen[i][1] for i in order]


def load_minilm(sequence_length=64):
    import ktransfer as kt

    return kt.encoders.BertEncoder.from_preset(
        "minilm", sequence_length=sequence_length, pooling="mean"
    )


def plain_finetune_accuracy(texts, labels, dev_texts, dev_labels, epochs, seed):
    import keras
    import numpy as np

    import ktransfer as kt

    keras.utils.set_random_seed(seed)
    encoder = load_minilm()
    head = kt.heads.ClassificationHead(2, dropout=0.1)
    model = keras.Sequential([encoder, head])
    model.compile(optimizer=keras.optimizers.Adam(2e-5), loss=head.default_loss())
    batches = kt.data.prepare(
        kt.data.from_lists(texts, labels), encoder.preprocessor, batch_size=8, shuffle=True, seed=seed
    )
    model.fit(batches, epochs=epochs, verbose=0)
    scores = kt.predict(model, dev_texts, batch_size=64, raw=True)
    return float(np.mean(np.argmax(scores, -1) == np.asarray(dev_labels)))


def setfit_accuracy(texts, labels, dev_texts, dev_labels, seed, max_pairs, epochs=1):
    import numpy as np

    import ktransfer as kt

    setfit = kt.fewshot.ContrastiveFinetuner(
        load_minilm(),
        num_iterations=20,
        epochs=epochs,
        batch_size=16,
        learning_rate=2e-5,
        max_pairs=max_pairs,
        seed=seed,
    )
    setfit.fit(texts, labels)
    return float(np.mean(setfit.predict(dev_texts) == np.asarray(dev_labels))), setfit


def run_sst2(args, result):
    import numpy as np

    rows = [r for r in read_tsv(os.path.join(SHARED, "sst2", "train.tsv")) if len(r[0].split()) >= 6]
    dev = read_tsv(os.path.join(SHARED, "sst2", "dev.tsv"))
    dev_texts, dev_labels = [r[0] for r in dev], [r[1] for r in dev]
    sst2 = {}
    for per_class in args.sst2_sizes:
        runs = {"contrastive": [], "finetune": [], "frozen_logreg": []}
        seconds = {name: 0.0 for name in runs}
        for seed in range(args.sst2_seeds):
            texts, labels = sst2_sample(rows, per_class, seed)
            t = time.perf_counter()
            runs["frozen_logreg"].append(
                setfit_accuracy(texts, labels, dev_texts, dev_labels, seed, None, epochs=0)[0]
            )
            seconds["frozen_logreg"] += time.perf_counter() - t
            t = time.perf_counter()
            accuracy, setfit = setfit_accuracy(
                texts, labels, dev_texts, dev_labels, seed, args.max_pairs
            )
            runs["contrastive"].append(accuracy)
            seconds["contrastive"] += time.perf_counter() - t
            if per_class == args.sst2_sizes[0] and seed == 0 and args.export_check:
                result["export_check"] = export_check(setfit, dev_texts[:8])
            t = time.perf_counter()
            epochs = max(4, min(20, 320 // (2 * per_class)))  # ~320 example-passes, >= 4 epochs
            runs["finetune"].append(
                plain_finetune_accuracy(texts, labels, dev_texts, dev_labels, epochs, seed)
            )
            seconds["finetune"] += time.perf_counter() - t
            print(f"# sst2 {per_class}/class seed {seed}: {runs}", file=sys.stderr, flush=True)
        sst2[f"{per_class}_per_class"] = {
            name: {
                "mean": round(float(np.mean(v)), 4),
                "std": round(float(np.std(v)), 4),
                "runs": [round(a, 4) for a in v],
                "seconds": round(seconds[name], 1),
            }
            for name, v in runs.items()
        }
        sst2[f"{per_class}_per_class"]["finetune"]["epochs"] = epochs
    result["sst2"] = sst2


def export_check(setfit, texts):
    """The SetFit model exported as a raw-string SavedModel answers like `predict_proba`."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="fewshot-export-") as folder:
        path = setfit.export(os.path.join(folder, "setfit", "1"))
        serve = tf.saved_model.load(path).signatures["serving_default"]
        served = serve(text=tf.constant(texts))["probabilities"].numpy()
    return {"max_abs_diff": float(np.max(np.abs(served - setfit.predict_proba(texts))))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small subset: 50 episodes, 1 SST-2 seed, 8/class")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--contrastive-episodes", type=int, default=None, help="default: --episodes")
    parser.add_argument("--train-per-intent", type=int, default=40)
    parser.add_argument("--proto-steps", type=int, default=1000)
    parser.add_argument("--proto-way", type=int, default=20, help="classes per meta-train episode")
    parser.add_argument("--protonet-bert-steps", type=int, default=150,
                        help="meta-train episodes for the end-to-end MiniLM ProtoNet (0: skip)")
    parser.add_argument("--protonet-bert-lr", type=float, default=1e-5)
    parser.add_argument("--sst2-sizes", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--sst2-seeds", type=int, default=2)
    parser.add_argument("--max-pairs", type=int, default=1280)
    parser.add_argument("--skip", choices=["clinc", "protonet_bert", "sst2"], nargs="*", default=[])
    parser.add_argument("--no-export-check", dest="export_check", action="store_false")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.proto_steps, args.sst2_seeds, args.sst2_sizes = 50, 300, 1, [8]
        args.protonet_bert_steps = min(args.protonet_bert_steps, 30)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # Keras on tf.data input
    result = {"benchmark": "fewshot", "args": vars(args)}
    started = time.perf_counter()
    if "clinc" not in args.skip:
        run_clinc(args, result)
    if "protonet_bert" not in args.skip and args.protonet_bert_steps:
        run_protonet_bert(args, result)
    if "sst2" not in args.skip:
        run_sst2(args, result)
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
