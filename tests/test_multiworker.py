"""Two worker processes on 127.0.0.1: MultiWorkerMirroredStrategy through kt.train.

Each worker gets its own `TF_CONFIG` (free loopback ports chosen at run time)
and runs the same script: it first checks how `kt.data.prepare(...,
shard="data")` splits one epoch between the workers, then trains with
`kt.train(config, strategy=...)` and saves its final weights. The test checks
that the two workers saw disjoint halves of every epoch, together all the
examples, and ended with bit-identical weights that differ from the start.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import REPO
from conftest import make_tiny_preset
from test_train import write_tiny_project

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF work
    import keras, ktransfer as kt

    config_path, preset, out = sys.argv[1], sys.argv[2], sys.argv[3]

    # 1. Sharding: label = example id; record what this worker gets per epoch.
    ids = list(range(48))
    dataset = kt.data.from_lists(["a great film"] * 48, ids, class_names=[str(i) for i in ids])
    encoder = kt.encoders.BertEncoder.from_preset(preset, sequence_length=16)
    batches = kt.data.prepare(dataset, encoder.preprocessor, batch_size=8, shuffle=True,
                              seed=5, shard="data")
    distributed = strategy.experimental_distribute_dataset(batches)
    seen = []
    for epoch in range(2):
        labels = []
        for features, label in distributed:
            for part in strategy.experimental_local_results(label):
                labels += part.numpy().tolist()
        seen.append(labels)

    # 2. Training through kt.train under the same strategy.
    keras.utils.set_random_seed(0)
    run = kt.train(config_path, strategy=strategy, verbose=0)
    np.savez(out + ".npz", *[np.asarray(w) for w in run.model.get_weights()])
    with open(out + ".json", "w") as f:
        json.dump({"seen": seen, "steps": run.steps, "replicas": strategy.num_replicas_in_sync}, f)
    """
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_shard_the_data_and_end_with_identical_weights(tmp_path):
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    config = write_tiny_project(
        tmp_path / "project", preset, validation=False, epochs=1, tensorboard=False
    )
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    try:
        for index in range(2):
            env = {
                **os.environ,
                "CUDA_VISIBLE_DEVICES": "",
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            }
            out = str(tmp_path / f"worker{index}")
            workers.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, config, preset, out],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        deadline = time.time() + 400
        for worker in workers:
            _, err = worker.communicate(timeout=max(deadline - time.time(), 1))
            assert worker.returncode == 0, err[-3000:]
    finally:
        for worker in workers:  # a hung or failed worker never outlives the test
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    reports = []
    for index in range(2):
        with open(tmp_path / f"worker{index}.json") as f:
            reports.append(json.load(f))
    assert reports[0]["replicas"] == 2
    for epoch in range(2):
        first, second = (set(r["seen"][epoch]) for r in reports)
        assert len(reports[0]["seen"][epoch]) == len(first) == 24  # no repeats within a worker
        assert first.isdisjoint(second)  # no example seen twice per epoch
        assert first | second == set(range(48))  # and none skipped
    assert reports[0]["seen"][0] != reports[0]["seen"][1]  # reshuffled every epoch

    # Global batch 8 = 4 per worker: 64 examples -> 8 steps on each worker.
    assert reports[0]["steps"] == reports[1]["steps"] == 8
    weights = [np.load(tmp_path / f"worker{index}.npz") for index in range(2)]
    names = weights[0].files
    for name in names:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    # Only the chief wrote the run folder; the other worker cleaned up after itself.
    run_dir = tmp_path / "project" / "run"
    assert os.path.isfile(run_dir / "model.keras")
    assert not os.listdir(run_dir / ".workers")
    from ktransfer.app.train import load_run

    _, chief_model = load_run(str(run_dir))
    for saved, expected in zip(chief_model.get_weights(), (weights[0][n] for n in names)):
        np.testing.assert_array_equal(saved, expected)


# ---------------------------------------------------------------------------
# Plain `model.fit` (no kt.train) of a word-vector task on two workers
# ---------------------------------------------------------------------------

TEXT_CNN_WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras, ktransfer as kt

    out, multiworker = sys.argv[1], sys.argv[2] == "multiworker"
    strategy = kt.distribute.get_strategy("multiworker" if multiworker else "default")
    WORDS = sorted(set("a great film good movie the plot is dull awful and boring fine very bad".split()))
    vectors = kt.WordVectors(WORDS, np.random.default_rng(0).normal(size=(len(WORDS), 8)).astype("float32"))
    texts = ["a great film", "a good movie", "the plot is dull", "awful and boring",
             "a very fine film", "bad and dull", "the movie is great", "boring plot"] * 2
    labels = [1, 1, 0, 0, 1, 0, 1, 0] * 2

    keras.utils.set_random_seed(0)
    with strategy.scope():
        encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower", trainable=True,
                                                fill_vocabulary=False, seed=0)
        encoder.adapt(texts)
        model = kt.models.TextCNN(encoder, 2, filter_sizes=(1, 2), num_filters=4, dropout=0.0,
                                  learning_rate=1e-2)
    start = [np.asarray(w) for w in model.get_weights()]
    # The call of issue 19: plain Keras fit on a tf.data.Dataset of raw strings.
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(8)
    history = model.fit(data, epochs=3, validation_data=data, verbose=0)
    evaluation = model.evaluate(data, verbose=0, return_dict=True)
    weights = [np.asarray(w) for w in model.get_weights()]
    np.savez(out + ".npz", *weights)
    with open(out + ".json", "w") as f:
        json.dump({
            "replicas": strategy.num_replicas_in_sync,
            "history": {k: [float(v) for v in values] for k, values in history.history.items()},
            "evaluation": {k: float(v) for k, v in evaluation.items()},
            "change": max(float(np.abs(a - b).max()) for a, b in zip(start, weights)),
        }, f)
    """
)


def test_plain_fit_of_a_text_cnn_on_raw_strings_on_two_workers(tmp_path):
    """TextCNN compiled in the scope of get_strategy("multiworker") (2 workers on
    loopback), trained with plain `model.fit` on a dataset of raw strings: both
    workers end with the weights a single process reaches on the whole batches."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    runs = [("worker0", "multiworker", 0), ("worker1", "multiworker", 1), ("single", "single", None)]
    processes = []
    try:
        for name, mode, index in runs:
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
            env.pop("TF_CONFIG", None)
            if index is not None:
                env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            processes.append(subprocess.Popen(
                [sys.executable, "-c", TEXT_CNN_WORKER, str(tmp_path / name), mode],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        deadline = time.time() + 400
        for process in processes:
            _, err = process.communicate(timeout=max(deadline - time.time(), 1))
            assert process.returncode == 0, err[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    reports = {}
    for name, _, _ in runs:
        with open(tmp_path / f"{name}.json") as f:
            reports[name] = json.load(f)
    assert reports["worker0"]["replicas"] == 2 and reports["single"]["replicas"] == 1
    assert reports["single"]["change"] > 1e-3  # training moved the weights
    weights = {name: np.load(tmp_path / f"{name}.npz") for name, _, _ in runs}
    for key in weights["single"].files:
        np.testing.assert_array_equal(weights["worker0"][key], weights["worker1"][key])
        np.testing.assert_allclose(weights["worker0"][key], weights["single"][key], rtol=0, atol=1e-5)
    # The logs are the global figures (scalars averaged over the workers), as on one process.
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            reports["worker0"]["history"][metric], reports["single"]["history"][metric], atol=1e-5
        )
    assert reports["worker0"]["evaluation"] == pytest.approx(reports["single"]["evaluation"], abs=1e-5)
