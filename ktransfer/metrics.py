"""Task metrics computed on whole datasets: entity F1 (NER), relation F1.

`entity_f1` scores named-entity chunks the way the CoNLL `conlleval` script
and `seqeval` (its default, non-strict mode) do, so the numbers are
comparable with published CoNLL-2003 results. A chunk counts as correct only
when its type, first word and last word all match. IOB1 (CoNLL-2003's own
scheme), IOB2 and IOBES tags are read with the same rules: an entity starts
at a `B-`/`S-` tag, or at an `I-`/`E-` tag whose type differs from the
previous tag's, or that follows `O`, `E-` or `S-`; it ends before `O`, a
`B-`/`S-` tag, or a change of type. Sentences are scored separately.

`relation_f1` is the official SemEval-2010 Task 8 score: macro-averaged F1
over the relation types, direction taken into account, excluding `Other`.

Both are plain functions over Python lists (they run once per evaluation,
over whole datasets, outside the training graph).

Example:

```python
import ktransfer as kt
gold = [["I-PER", "I-PER", "O", "I-LOC"]]
predicted = [["I-PER", "I-PER", "O", "O"]]
kt.metrics.entity_f1(gold, predicted)["f1"]  # 0.666...
```
"""

import collections


def entities(tags):
    """The entity chunks of one sentence's tags: a list of (type, start, end).

    `end` is inclusive. Tags are `"O"` or `"<prefix>-<type>"` with the prefix
    one of B, I, E, S (IOB1, IOB2, IOBES); a tag without a prefix (e.g.
    `"PER"`) is read as `I-PER`.

    ```python
    entities(["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-ORG"])
    # [('PER', 0, 1), ('LOC', 3, 4), ('ORG', 5, 5)]
    ```
    """
    chunks = []
    previous_prefix, previous_type, start = "O", None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, type_ = _split_tag(tag)
        ends = previous_prefix != "O" and (
            previous_prefix in ("E", "S")
            or prefix in ("B", "S", "O")
            or type_ != previous_type
        )
        if ends:
            chunks.append((previous_type, start, i - 1))
        starts = prefix != "O" and (
            prefix in ("B", "S")
            or previous_prefix in ("O", "E", "S")
            or type_ != previous_type
        )
        if starts:
            start = i
        previous_prefix, previous_type = prefix, type_
    return chunks


def entity_f1(gold, predicted):
    """Entity-level precision, recall and F1 (CoNLL / seqeval semantics).

    Args:
        gold: the true tags, a list of sentences, each a list of tag strings
            (or bytes, as `tf.data` yields them).
        predicted: the predicted tags, the same shape as `gold`.

    Returns:
        A dict: `precision`, `recall`, `f1` (micro-averaged over all entity
        chunks; 0.0 when undefined), `per_type` (`{type: {"precision",
        "recall", "f1", "support"}}`), and the counts `num_gold`,
        `num_predicted`, `num_correct`.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.entity_f1([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    # {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, ...}
    ```
    """
    gold, predicted = _as_sentences(gold, "gold"), _as_sentences(predicted, "predicted")
    if len(gold) != len(predicted):
        raise ValueError(
            f"`gold` has {len(gold)} sentences but `predicted` has "
            f"{len(predicted)}: pass one predicted tag sequence per sentence."
        )
    gold_counts, predicted_counts, correct_counts = (collections.Counter() for _ in range(3))
    for i, (true_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(true_tags) != len(predicted_tags):
            raise ValueError(
                f"Sentence {i} has {len(true_tags)} gold tags but "
                f"{len(predicted_tags)} predicted: predict one tag per word."
            )
        true_chunks = set(entities(true_tags))
        predicted_chunks = set(entities(predicted_tags))
        gold_counts.update(chunk[0] for chunk in true_chunks)
        predicted_counts.update(chunk[0] for chunk in predicted_chunks)
        correct_counts.update(chunk[0] for chunk in true_chunks & predicted_chunks)
    result = _scores(
        sum(correct_counts.values()),
        sum(predicted_counts.values()),
        sum(gold_counts.values()),
    )
    result["per_type"] = {
        type_: dict(
            _scores(correct_counts[type_], predicted_counts[type_], gold_counts[type_]),
            support=gold_counts[type_],
        )
        for type_ in sorted(set(gold_counts) | set(predicted_counts))
    }
    result.update(
        num_gold=sum(gold_counts.values()),
        num_predicted=sum(predicted_counts.values()),
        num_correct=sum(correct_counts.values()),
    )
    return result


def relation_f1(gold, predicted, other="Other"):
    """The official SemEval-2010 Task 8 score: direction-aware macro-F1.

    Labels are relation names with a direction, e.g. `"Cause-Effect(e1,e2)"`,
    and the `other` label. For each relation type (the name before `(`), a
    prediction is correct when type *and* direction match; precision divides
    the correct ones by every prediction of that type (either direction),
    recall by every gold example of that type. The score is the mean of the
    per-type F1 over the types other than `other` ("(9+1)-way evaluation
    with directionality taken into account", the task's official measure).

    Args:
        gold: the true labels, a list of str.
        predicted: the predicted labels, a list of str of the same length.
        other: the label left out of the average.

    Returns:
        A dict: `f1` (the official macro-F1), `precision` and `recall`
        (their macro averages), and `per_type` (`{type: {"precision",
        "recall", "f1", "support"}}`).

    Example:

    ```python
    import ktransfer as kt
    gold = ["Cause-Effect(e1,e2)", "Other", "Cause-Effect(e2,e1)"]
    predicted = ["Cause-Effect(e1,e2)", "Other", "Cause-Effect(e1,e2)"]
    kt.metrics.relation_f1(gold, predicted)["f1"]  # P=1/2, R=1/2 -> 0.5
    ```
    """
    gold = [_as_str(label) for label in gold]
    predicted = [_as_str(label) for label in predicted]
    if len(gold) != len(predicted):
        raise ValueError(
            f"`gold` has {len(gold)} labels but `predicted` has {len(predicted)}."
        )

    def relation_type(label):
        return label.split("(", 1)[0]

    gold_counts, predicted_counts, correct_counts = (collections.Counter() for _ in range(3))
    for true_label, predicted_label in zip(gold, predicted):
        gold_counts[relation_type(true_label)] += 1
        predicted_counts[relation_type(predicted_label)] += 1
        if true_label == predicted_label:
            correct_counts[relation_type(true_label)] += 1
    types = sorted((set(gold_counts) | set(predicted_counts)) - {other})
    if not types:
        raise ValueError(f"No relation other than {other!r} in `gold` or `predicted`.")
    per_type = {
        type_: dict(
            _scores(correct_counts[type_], predicted_counts[type_], gold_counts[type_]),
            support=gold_counts[type_],
        )
        for type_ in types
    }
    return {
        "precision": sum(s["precision"] for s in per_type.values()) / len(types),
        "recall": sum(s["recall"] for s in per_type.values()) / len(types),
        "f1": sum(s["f1"] for s in per_type.values()) / len(types),
        "per_type": per_type,
    }


def _scores(correct, num_predicted, num_gold):
    precision = correct / num_predicted if num_predicted else 0.0
    recall = correct / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _split_tag(tag):
    tag = _as_str(tag)
    if tag == "O":
        return "O", None
    prefix, dash, type_ = tag.partition("-")
    if dash and prefix in ("B", "I", "E", "S"):
        return prefix, type_
    return "I", tag


def _as_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        value = getattr(value, "item", lambda: value)()  # numpy scalars
        if isinstance(value, bytes):
            return value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"Labels must be strings (or bytes). Received: {value!r}")
    return value


def _as_sentences(sentences, name):
    if isinstance(sentences, (str, bytes)):
        raise TypeError(f"`{name}` must be a list of tag sequences, not one string.")
    result = []
    for sentence in sentences:
        if isinstance(sentence, (str, bytes)):
            raise TypeError(
                f"`{name}` must be a list of sentences, each a list of tags; "
                f"found the string {sentence!r} in place of a sentence."
            )
        result.append([_as_str(tag) for tag in sentence])
    return result
