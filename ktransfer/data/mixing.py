"""`mix`: interleave the batches of several tasks into one multi-task dataset.

Each task keeps its own prepared pipeline (`kt.data.prepare`: its own
preprocessor, batch size and length buckets), and every batch of the mixed
dataset comes from exactly one task. Batches are mapped to one common
structure so that a single `tf.data` pipeline (and one traced train step)
carries them all:

```
(features, labels, sample_weights)
features:       the task's encoder inputs + "task_id" (int32 [batch], the
                task's index in `mixed.tasks`)
labels:         {task: label} for every task; the other tasks' entries are
                zeros of their label shape (placeholders)
sample_weights: {task: float32 [batch]}: 1 for the batch's own task, 0 for
                the others, so every other head's loss and metrics ignore it
```

Batches are not padded to a common length: each keeps its bucket width
(token tensors are `[batch, None]` in every task), which is what makes
mixing short sentences with long reviews affordable. How often each task
comes up in an epoch is decided by `strategy`; the order is a seeded shuffle
(or a fixed cycle), and the counts are exact, not sampled, so a small task
gets exactly its share in every epoch.
"""

import math

import numpy as np

from ktransfer._keras import keras  # noqa: F401  (sets the backend first)

import tensorflow as tf

STRATEGIES = ("proportional", "round_robin", "temperature")
TASK_ID = "task_id"


def mix(datasets, strategy="proportional", temperature=2.0, seed=None, num_batches=None):
    """Interleave per-task batched datasets into one multi-task dataset.

    Args:
        datasets: a dict `{task_name: dataset}` of batched `(features, label)`
            datasets, e.g. from `kt.data.prepare`. Task names are Python
            identifiers; their order defines the task ids (0, 1, ...).
            Features must be dicts with the same keys and dtypes in every
            task (e.g. all from BERT preprocessors).
        strategy: how many batches of each task an epoch holds:
            - `"proportional"`: every batch of every task exactly once
              (counts = the tasks' sizes in batches), in a shuffled order;
            - `"round_robin"`: the tasks in turn, `t0, t1, t0, t1, ...`, until
              the largest task has been seen once (smaller tasks repeat);
            - `"temperature"`: task t gets a share `p_t` proportional to
              `n_t ** (1 / temperature)` (`n_t` its size in batches) of the
              epoch, shuffled: T=1 is proportional, larger T moves toward
              uniform (small tasks are up-sampled, large ones down-sampled).
        temperature: the T of `strategy="temperature"`, > 0.
        seed: seed of the order in which task batches come (reshuffled every
            epoch); None draws a fresh order.
        num_batches: batches per epoch; default the total of the tasks'
            sizes (`round_robin`: the number of tasks times the largest
            size). Tasks that need more batches than they have start over
            (shuffle them in `prepare` so each pass differs); tasks that
            need fewer contribute their first batches of the pass.

    Returns:
        A `tf.data.Dataset` of `(features, labels, sample_weights)` (see the
        module docstring) with attributes `tasks` (names in id order),
        `class_names` (`{task: names}`), `counts` (`{task: batches per epoch}`)
        and `probabilities` (`{task: share of the batches}`).

    Example:

    ```python
    sentiment = kt.data.prepare(sst2, encoder.preprocessor, batch_size=32, shuffle=True, seed=0)
    topic = kt.data.prepare(reviews, encoder.preprocessor, batch_size=32, shuffle=True, seed=0)
    train = kt.data.mix({"sentiment": sentiment, "topic": topic}, strategy="temperature",
                        temperature=2.0, seed=0)
    model.fit(train, epochs=2)
    ```
    """
    tasks, sizes, label_specs = _check_datasets(datasets)
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: {strategy!r}")
    if strategy == "temperature" and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not temperature > 0
        or not math.isfinite(temperature)
    ):
        raise ValueError(f"`temperature` must be a positive number. Received: {temperature!r}")
    if num_batches is not None and (
        isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1
    ):
        raise ValueError(f"`num_batches` must be None or a positive int. Received: {num_batches!r}")

    choices = task_schedule(sizes, strategy, temperature, num_batches)
    counts = np.bincount(choices, minlength=len(tasks))
    choice = tf.data.Dataset.from_tensor_slices(tf.constant(choices, tf.int64))
    if strategy != "round_robin":
        choice = choice.shuffle(len(choices), seed=seed, reshuffle_each_iteration=True)

    branches = []
    for task_id, task in enumerate(tasks):
        tagged = datasets[task].map(
            _tagger(task_id, tasks, label_specs), num_parallel_calls=tf.data.AUTOTUNE
        )
        if counts[task_id] > sizes[task_id]:
            tagged = tagged.repeat()
        branches.append(tagged)
    mixed = tf.data.Dataset.choose_from_datasets(branches, choice, stop_on_empty_dataset=True)
    mixed = mixed.apply(tf.data.experimental.assert_cardinality(len(choices)))
    mixed = mixed.prefetch(tf.data.AUTOTUNE)
    mixed.tasks = list(tasks)
    mixed.class_names = {task: getattr(datasets[task], "class_names", None) for task in tasks}
    mixed.counts = {task: int(c) for task, c in zip(tasks, counts)}
    mixed.probabilities = {task: float(c) / len(choices) for task, c in zip(tasks, counts)}
    return mixed


def task_schedule(sizes, strategy="proportional", temperature=2.0, num_batches=None):
    """The task id of each batch of one epoch, before shuffling (numpy int64).

    `sizes` are the tasks' sizes in batches. Counts are exact: shares are
    rounded by the largest-remainder method, so they sum to `num_batches`.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    num_tasks = len(sizes)
    if strategy == "round_robin":
        total = num_batches or num_tasks * int(sizes.max())
        return np.arange(total, dtype=np.int64) % num_tasks
    total = num_batches or int(sizes.sum())
    exponent = 1.0 if strategy == "proportional" else 1.0 / temperature
    # Normalise before the power: sizes ** (1/T) over-/underflows for large T.
    weights = (sizes / sizes.max()) ** exponent
    shares = weights / weights.sum() * total
    counts = np.floor(shares).astype(np.int64)
    order = np.argsort(-(shares - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return np.repeat(np.arange(num_tasks, dtype=np.int64), counts)


def _tagger(task_id, tasks, label_specs):
    own = tasks[task_id]

    def tag(features, label):
        batch = tf.shape(label)[0]
        features = dict(features)
        features[TASK_ID] = tf.fill([batch], tf.constant(task_id, tf.int32))
        labels, weights = {}, {}
        for task in tasks:
            if task == own:
                labels[task] = tf.cast(label, label_specs[task].dtype)
                weights[task] = tf.ones([batch], tf.float32)
            else:
                spec = label_specs[task]
                rest = tf.constant(spec.shape[1:].as_list(), tf.int32)
                labels[task] = tf.zeros(tf.concat([[batch], rest], 0), spec.dtype)
                weights[task] = tf.zeros([batch], tf.float32)
        return features, labels, weights

    return tag


def _check_datasets(datasets):
    if not isinstance(datasets, dict) or not datasets:
        raise TypeError(
            "`datasets` must be a non-empty dict {task_name: batched dataset}, e.g. "
            "{'sentiment': kt.data.prepare(...), 'topic': kt.data.prepare(...)}. "
            f"Received: {type(datasets).__name__}"
        )
    tasks = list(datasets)
    check_task_names(tasks)
    sizes, label_specs, feature_specs = [], {}, {}
    for task in tasks:
        dataset = datasets[task]
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(
                f"datasets[{task!r}] must be a tf.data.Dataset of batched (features, "
                f"label) pairs (kt.data.prepare). Received: {type(dataset).__name__}"
            )
        spec = dataset.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], dict)):
            raise ValueError(
                f"datasets[{task!r}] must yield batched (features_dict, label) pairs, as "
                "kt.data.prepare makes from a labelled dataset. Its element_spec is "
                f"{spec}."
            )
        features, label = spec
        if not isinstance(label, tf.TensorSpec) or label.shape.rank is None or label.shape.rank < 1:
            raise ValueError(
                f"datasets[{task!r}] labels must be one batched tensor ([batch] class "
                f"indices or [batch, classes] multi-hot). Its label spec is {label}."
            )
        if not label.shape[1:].is_fully_defined():
            raise ValueError(
                f"datasets[{task!r}] labels have shape {label.shape}: every dimension "
                "after the batch must be known, so that the other tasks' batches can "
                "carry placeholder labels of that shape."
            )
        cardinality = int(dataset.cardinality())
        if cardinality < 0:
            raise ValueError(
                f"datasets[{task!r}] has {'infinite' if cardinality == -1 else 'unknown'} "
                "cardinality; mix needs each task's size in batches. Pass a finite "
                "dataset (kt.data.prepare keeps the count), or apply "
                "tf.data.experimental.assert_cardinality(n) after a filter."
            )
        if cardinality == 0:
            raise ValueError(f"datasets[{task!r}] is empty.")
        sizes.append(cardinality)
        label_specs[task] = label
        feature_specs[task] = features
    first = tasks[0]
    for task in tasks[1:]:
        theirs, ours = feature_specs[task], feature_specs[first]
        if sorted(theirs) != sorted(ours) or any(
            theirs[k].dtype != ours[k].dtype or theirs[k].shape.rank != ours[k].shape.rank
            for k in ours
        ):
            raise ValueError(
                f"Tasks {first!r} and {task!r} yield different features "
                f"({_describe(ours)} vs {_describe(theirs)}): one shared encoder needs the "
                "same inputs in every task. Prepare all tasks with the encoder's "
                "preprocessor (sequence lengths may differ)."
            )
    if TASK_ID in feature_specs[first]:
        raise ValueError(f"The features already hold a {TASK_ID!r} entry: is this dataset mixed already?")
    return tasks, sizes, label_specs


def check_task_names(tasks):
    """Task names must be identifiers: they name signatures, metrics and heads."""
    for task in tasks:
        if not isinstance(task, str) or not task.isidentifier() or task in RESERVED_NAMES:
            raise ValueError(
                f"Task names must be Python identifiers such as 'sentiment' (they name "
                f"metrics, e.g. 'sentiment_accuracy', and export signatures) and not one "
                f"of {sorted(RESERVED_NAMES)}. Received: {task!r}"
            )


RESERVED_NAMES = frozenset({TASK_ID, "serving_default", "loss"})


def _describe(features):
    return {k: f"{v.dtype.name}{v.shape}" for k, v in sorted(features.items())}


__all__ = ["mix", "task_schedule"]
