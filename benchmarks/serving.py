"""Serving speed of exported SavedModels: ktransfer vs a KerasHub classifier export.

Both exports take raw strings (tokeniser inside the graph) and hold the same
MiniLM backbone with a 2-class head (weights untrained: speed does not depend
on them). Each is loaded back with `tf.saved_model.load` in a fresh process
(tensorflow + tensorflow_text only), then measured:

- single-sentence latency: median (and p90) of 200 calls on one SST-2 dev sentence each;
- batch-64 throughput: sentences/s over 20 batches of 64 SST-2 dev sentences.

    python benchmarks/serving.py
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(REPO, "examples", "data", "sst2_dev.tsv")

MEASURE = r"""
import json, statistics, sys, time
import tensorflow as tf
import tensorflow_text  # noqa: F401
path, texts = sys.argv[1], json.load(open(sys.argv[2]))
serve = tf.saved_model.load(path).signatures["serving_default"]
for text in texts[:20]:
    serve(text=tf.constant([text]))  # warm-up
latencies = []
for i in range(200):
    start = time.perf_counter()
    serve(text=tf.constant([texts[i % len(texts)]]))
    latencies.append((time.perf_counter() - start) * 1000)
latencies.sort()
cycled = texts * (64 * 20 // len(texts) + 1)  # 20 full batches, in dev-file order
batches = [cycled[i:i + 64] for i in range(0, 64 * 20, 64)]
serve(text=tf.constant(batches[0]))
start = time.perf_counter()
for batch in batches:
    serve(text=tf.constant(batch))
seconds = time.perf_counter() - start
print(json.dumps({
    "single_latency_ms_median": round(statistics.median(latencies), 2),
    "single_latency_ms_p90": round(latencies[int(0.9 * len(latencies))], 2),
    "batch64_sentences_per_s": round(64 * len(batches) / seconds, 1),
}))
"""


def export_both(folder, out):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import keras_hub
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=128, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    ours = kt.export.save(model, os.path.join(out, "ktransfer", "1"), labels=["negative", "positive"])

    classifier = keras_hub.models.BertTextClassifier(
        backbone=keras_hub.models.BertBackbone.from_preset(folder),
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor.from_preset(folder, sequence_length=128),
        num_classes=2,
    )
    classifier.predict(["warm up"], verbose=0)

    def serve(text):
        logits = classifier(classifier.preprocessor(text), training=False)
        return {"probabilities": tf.nn.softmax(logits)}

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        "serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")]
    )
    theirs = os.path.join(out, "keras_hub", "1")
    archive.write_out(theirs, verbose=False)
    return ours, theirs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with open(DEV, encoding="utf-8", newline="") as f:
        texts = [row[0] for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    with tempfile.TemporaryDirectory() as out:
        import ktransfer as kt

        ours, theirs = export_both(kt.assets.path("minilm"), out)
        texts_file = os.path.join(out, "texts.json")
        json.dump(texts, open(texts_file, "w"))
        results = {}
        for name, path in (("ktransfer", ours), ("keras_hub", theirs)):
            done = subprocess.run(
                [sys.executable, "-c", MEASURE, path, texts_file], capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    results["benchmark"] = "serving_minilm_sst2"
    results["latency_ratio_keras_hub_over_ktransfer"] = round(
        results["keras_hub"]["single_latency_ms_median"] / results["ktransfer"]["single_latency_ms_median"], 2
    )
    results["batch64_throughput_ratio"] = round(
        results["ktransfer"]["batch64_sentences_per_s"] / results["keras_hub"]["batch64_sentences_per_s"], 2
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
