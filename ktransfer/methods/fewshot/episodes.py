"""`EpisodeSampler`: N-way K-shot episodes of a labelled dataset, as tf.data.

Few-shot learners are trained and evaluated on *episodes* (Vinyals et al.
2016): pick `n_way` classes at random, take `k_shot` labelled *support*
examples and `n_query` *query* examples of each, relabel the chosen classes
`0..n_way-1` for this episode only, and ask the learner to label the queries
from the support alone. A learner that does well on episodes of classes it
never saw in training adapts to new classes without retraining.

Each element of `EpisodeSampler(...).dataset()` is one episode, shaped for
`keras.Model.fit` (inputs, targets):

```
({"support": [n_way * k_shot], "support_labels": [n_way * k_shot],
  "query": [n_way * n_query]}, query_labels [n_way * n_query])
```

`support`/`query` hold the dataset's examples (strings for a text dataset,
vectors for the cached features of `kt.strategies.cache_features`), grouped
by class; labels are int32 episode-local class indices. Support and query of
an episode never share an example, and its classes are distinct. Sampling
runs in the tf.data graph with stateless random ops: episode `i` depends
only on `(seed, i)`, so a run is reproducible, and so is episode `i` alone.

Example:

```python
import ktransfer as kt
train = kt.data.from_tsv("clinc150/train.tsv", text="sentence", label="label")
sampler = kt.fewshot.EpisodeSampler(train, n_way=5, k_shot=1, n_query=15, seed=0)
inputs, query_labels = next(iter(sampler.dataset()))
inputs["support"].shape   # (5,): one text per class
query_labels.shape        # (75,)
```
"""

import numpy as np

import tensorflow as tf


class EpisodeSampler:
    """Samples N-way K-shot episodes from an unbatched labelled dataset.

    Args:
        dataset: an unbatched `tf.data.Dataset` of `(example, label)` with a
            scalar integer label (`kt.data.from_*`, or
            `kt.strategies.cache_features`). It is read into memory once.
        n_way: classes per episode (>= 2).
        k_shot: support examples per class (>= 1).
        n_query: query examples per class (>= 1).
        seed: the sampling seed (an int).
        classes: optional list of the class indices to sample from (e.g. the
            meta-train classes); default every class in `dataset`.
        num_episodes: how many episodes `dataset()` yields by default; None
            means an endless stream (use `steps_per_epoch` with `fit`).

    Raises:
        ValueError: when a class has fewer than `k_shot + n_query` examples,
            or fewer than `n_way` classes are available.
    """

    def __init__(
        self, dataset, n_way, k_shot, n_query, seed=0, classes=None, num_episodes=None
    ):
        for name, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"`{name}` must be an int >= {low}. Received: {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"`seed` must be an int. Received: {seed!r}")
        if num_episodes is not None and (
            isinstance(num_episodes, bool)
            or not isinstance(num_episodes, (int, np.integer))
            or num_episodes < 1
        ):
            raise ValueError(
                f"`num_episodes` must be a positive int or None. Received: {num_episodes!r}"
            )
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.seed = int(seed)
        self.num_episodes = None if num_episodes is None else int(num_episodes)
        self.class_names = getattr(dataset, "class_names", None)
        examples, labels = _read(dataset)
        self._examples = examples
        self._set_classes(labels, classes)

    # -- setup ---------------------------------------------------------------
    def _set_classes(self, labels, classes):
        present, counts = np.unique(labels, return_counts=True)
        available = dict(zip(present.tolist(), counts.tolist()))
        if classes is None:
            classes = present.tolist()
        else:
            classes = sorted({int(c) for c in classes})
            missing = [c for c in classes if c not in available]
            if missing:
                raise ValueError(
                    f"`classes` names {missing[:10]} which have no examples in the "
                    "dataset. Pass class indices that occur in its labels."
                )
        needed = self.k_shot + self.n_query
        short = [(c, available[c]) for c in classes if available[c] < needed]
        if short:
            named = ", ".join(f"{self._name(c)}: {n}" for c, n in short[:10])
            raise ValueError(
                f"Every class needs at least k_shot + n_query = {needed} examples so "
                f"that support and query do not overlap; {len(short)} class(es) have "
                f"fewer ({named}{', ...' if len(short) > 10 else ''}). Lower k_shot or "
                "n_query, or leave those classes out with `classes=`."
            )
        if len(classes) < self.n_way:
            raise ValueError(
                f"n_way={self.n_way} classes per episode but only {len(classes)} "
                "classes are available. Lower n_way or add classes."
            )
        self.classes = list(classes)
        # [num_classes, max_count] example indices of each class, -1 padded.
        members = [np.flatnonzero(labels == c) for c in classes]
        width = max(len(m) for m in members)
        table = np.full((len(classes), width), -1, dtype=np.int64)
        for row, m in zip(table, members):
            row[: len(m)] = m
        self._members = table
        self._counts = np.array([len(m) for m in members], dtype=np.int64)

    def _name(self, c):
        if self.class_names and 0 <= c < len(self.class_names):
            return f"class {c} ({self.class_names[c]!r})"
        return f"class {c}"

    # -- sampling --------------------------------------------------------------
    def dataset(self, num_episodes="default"):
        """The episodes as a `tf.data.Dataset` (see the module docstring).

        Args:
            num_episodes: how many episodes; default the constructor's
                `num_episodes` (None: endless).
        """
        if num_episodes == "default":
            num_episodes = self.num_episodes
        indices = tf.data.Dataset.counter() if num_episodes is None else tf.data.Dataset.range(num_episodes)
        examples = tf.constant(self._examples)
        sample = self._index_sampler()

        def episode(i):
            support, query, classes = sample(i)
            del classes
            local = tf.range(self.n_way, dtype=tf.int32)
            inputs = {
                "support": tf.gather(examples, tf.reshape(support, [-1])),
                "support_labels": tf.repeat(local, self.k_shot),
                "query": tf.gather(examples, tf.reshape(query, [-1])),
            }
            return inputs, tf.repeat(local, self.n_query)

        return indices.map(episode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def episode_indices(self, i):
        """Episode `i` as numpy indices into the dataset's examples.

        Returns:
            `(support [n_way, k_shot], query [n_way, n_query], classes [n_way])`:
            row `j` of `support`/`query` holds the examples of the episode's
            class `j`, whose dataset label is `classes[j]`.
        """
        support, query, classes = self._index_sampler()(tf.constant(i, tf.int64))
        return support.numpy(), query.numpy(), classes.numpy()

    def _index_sampler(self):
        members = tf.constant(self._members)
        counts = tf.constant(self._counts)
        class_ids = tf.constant(np.asarray(self.classes, dtype=np.int64))
        n_way, needed = self.n_way, self.k_shot + self.n_query
        seed = self.seed

        def sample(i):
            i = tf.cast(i, tf.int64)
            key = tf.stack([tf.constant(seed, tf.int64), i])
            # n_way distinct classes: the first n_way of a random permutation.
            scores = tf.random.stateless_uniform([tf.size(counts)], seed=key)
            chosen = tf.argsort(scores)[:n_way]
            # For each chosen class, a random permutation of its examples
            # (padding sorts last); support then query, without overlap.
            width = tf.shape(members)[1]
            scores = tf.random.stateless_uniform([n_way, width], seed=key + [0, 1 << 40])
            valid = tf.range(width, dtype=tf.int64)[None, :] < tf.gather(counts, chosen)[:, None]
            order = tf.argsort(tf.where(valid, scores, 2.0), axis=1)[:, :needed]
            picked = tf.gather(tf.gather(members, chosen), order, batch_dims=1)
            return picked[:, : self.k_shot], picked[:, self.k_shot :], tf.gather(class_ids, chosen)

        return sample


def _read(dataset):
    """All `(example, label)` of `dataset` as two numpy arrays."""
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "`dataset` must be an unbatched tf.data.Dataset of (example, label), "
            "e.g. from kt.data.from_lists / from_tsv or kt.strategies.cache_features. "
            f"Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            "EpisodeSampler needs labelled examples: `dataset` must yield "
            f"(example, label) pairs. Its element_spec is {spec}."
        )
    example_spec, label_spec = spec
    if not isinstance(example_spec, tf.TensorSpec) or not (
        label_spec.shape.rank == 0 and label_spec.dtype.is_integer
    ):
        raise ValueError(
            "EpisodeSampler needs unbatched examples (a string or a vector) with "
            "scalar integer class labels (multi-label datasets are not supported). "
            f"The dataset's element_spec is {spec}; if it is batched, call "
            "`.unbatch()` first."
        )
    examples, labels = [], []
    for example, label in dataset.batch(4096).as_numpy_iterator():
        examples.append(example)
        labels.append(label)
    if not labels:
        raise ValueError("The dataset is empty: there are no episodes to sample.")
    return np.concatenate(examples), np.concatenate(labels).astype(np.int64)
