"""`write_report`: an HTML page and a model card for a training run.

Reads what `kt.train` leaves in its run folder (`config.yaml`,
`metrics.json`, `history.csv`, and when present `steps.csv`,
`provenance.json`, `misclassified.json`, `status.json`) and writes
`RUN_DIR/report/` (atomically: the whole folder appears at once):

- `curves.png`: training loss and learning rate at every step, validation
  loss and accuracy at each epoch end;
- `confusion_matrix.png`: counts, true class by predicted class;
- `per_class.png`: precision, recall and F1 per class;
- `index.html`: the plots, the most confident mistakes and the model card,
  one self-contained page, one title per section;
- `model_card.md`: model, intended use, data, training, results and
  provenance (base checkpoint and its sha256, data files and the rows used,
  library versions, date, licence) in Markdown.

Plots are drawn with matplotlib (Agg backend, no display needed).

```python
from ktransfer.app.report import write_report
write_report("runs/sst2")   # -> "runs/sst2/report/index.html"
```
"""

import html
import json
import os
import re

from ktransfer.utils.files import atomic_directory

MISTAKES_SHOWN = 20


def write_report(run_dir, output=None):
    """Write the report of `run_dir`; returns the path of `index.html`."""
    import yaml

    from ktransfer.app import runs

    run_dir = os.path.abspath(os.fspath(run_dir))
    config_file = os.path.join(run_dir, "config.yaml")
    metrics_file = os.path.join(run_dir, "metrics.json")
    status = runs.read_status(run_dir) if os.path.isdir(run_dir) else None
    if not (os.path.isfile(config_file) and os.path.isfile(metrics_file)):
        runs.require_finished(run_dir, ["config.yaml", "metrics.json"])  # raises, saying why
    with open(config_file, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    with open(metrics_file, encoding="utf-8") as f:
        metrics = json.load(f)
    run = {
        "config": config,
        "metrics": metrics,
        "history": runs.read_history(run_dir),
        "steps": runs.read_steps(run_dir),
        "provenance": runs.read_json(os.path.join(run_dir, runs.PROVENANCE_FILE)) or {},
        "mistakes": runs.read_json(os.path.join(run_dir, "misclassified.json")),
        "status": status or {},
        "name": os.path.basename(run_dir),
    }
    output = os.path.abspath(output or os.path.join(run_dir, "report"))
    with atomic_directory(output, overwrite=True) as staging:
        plots = _plots(run, staging)
        card = model_card(config, metrics, run["history"], run["provenance"], run["mistakes"],
                          name=run["name"])
        with open(os.path.join(staging, "model_card.md"), "w", encoding="utf-8") as f:
            f.write(card)
        with open(os.path.join(staging, "index.html"), "w", encoding="utf-8") as f:
            f.write(_html(run, plots, card))
    return os.path.join(output, "index.html")


def _evaluated(metrics):
    return metrics.get("validation") or metrics.get("test")


def _plots(run, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history, steps, metrics = run["history"], run["steps"], run["metrics"]
    written = []
    epochs = [e + 1 for e in history.get("epoch", [])]
    steps_per_epoch = metrics.get("steps_per_epoch")
    if epochs or steps.get("step"):
        figure, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        loss_axis, rate_axis, accuracy_axis = axes
        if steps.get("step"):
            loss_axis.plot(steps["step"], steps["loss"], lw=1, alpha=0.5, label="training (each step)")
            loss_axis.plot(steps["step"], steps["mean_loss"], lw=1.5, label="training (epoch mean so far)")
            loss_axis.set_xlabel("optimizer step")
            if steps_per_epoch and "val_loss" in history:
                loss_axis.plot([e * steps_per_epoch for e in epochs], history["val_loss"], "o",
                               label="validation (epoch end)")
        elif "loss" in history:
            loss_axis.plot(epochs, history["loss"], marker="o", label="training")
            if "val_loss" in history:
                loss_axis.plot(epochs, history["val_loss"], marker="o", label="validation")
            _integer_axis(loss_axis, epochs)
            loss_axis.set_xlabel("epoch")
        loss_axis.set_title("loss")
        if steps.get("learning_rate") and any(r == r for r in steps["learning_rate"]):
            rate_axis.plot(steps["step"], steps["learning_rate"], lw=1.5, color="tab:green")
            rate_axis.set_xlabel("optimizer step")
            rate_axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        else:
            rate_axis.text(0.5, 0.5, "not recorded", ha="center", va="center",
                           transform=rate_axis.transAxes)
        rate_axis.set_title("learning rate")
        for key, label in (("accuracy", "training"), ("val_accuracy", "validation")):
            if key in history:
                accuracy_axis.plot(epochs, history[key], marker="o", label=label)
        _integer_axis(accuracy_axis, epochs)
        accuracy_axis.set_ylim(0, 1.02)
        accuracy_axis.set_xlabel("epoch")
        accuracy_axis.set_title("accuracy (epoch end)")
        for axis in axes:
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(os.path.join(folder, "curves.png"), dpi=100)
        plt.close(figure)
        written.append(("curves.png", "Training curves"))
    evaluated = _evaluated(metrics)
    if evaluated and evaluated.get("confusion_matrix"):
        names = evaluated["class_names"]
        matrix = evaluated["confusion_matrix"]
        size = max(3.5, 0.5 * len(names) + 2)
        figure, axis = plt.subplots(figsize=(size, size))
        image = axis.imshow(matrix, cmap="Blues")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        peak = max(max(row) for row in matrix) or 1
        if len(names) <= 30:
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    axis.text(j, i, str(count), ha="center", va="center",
                              color="white" if count > peak / 2 else "black")
        figure.colorbar(image, ax=axis, fraction=0.046)
        figure.tight_layout()
        figure.savefig(os.path.join(folder, "confusion_matrix.png"), dpi=100)
        plt.close(figure)
        written.append(("confusion_matrix.png", "Confusion matrix"))
    if evaluated and evaluated.get("per_class"):
        names = list(evaluated["per_class"])
        figure, axis = plt.subplots(figsize=(max(5, 0.6 * len(names) + 3), 3.8))
        width = 0.27
        for k, key in enumerate(("precision", "recall", "f1")):
            values = [evaluated["per_class"][n][key] for n in names]
            axis.bar([i + (k - 1) * width for i in range(len(names))], values, width, label=key)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_ylim(0, 1)
        axis.legend()
        figure.tight_layout()
        figure.savefig(os.path.join(folder, "per_class.png"), dpi=100)
        plt.close(figure)
        written.append(("per_class.png", "Per-class metrics"))
    return written


def _integer_axis(axis, epochs):
    if epochs:
        axis.set_xticks(epochs)
        axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def _short_hash(value):
    return f"`{value[:16]}…`" if value else "not recorded"


def model_card(config, metrics, history=None, provenance=None, mistakes=None, name=None):
    """A Markdown model card: model, intended use, data, training, results, provenance."""
    provenance = provenance or {}
    encoder = config.get("encoder", {})
    task = config.get("task", {})
    data = config.get("data", {})
    training = config.get("training", {})
    names = task.get("labels") or [str(i) for i in range(task.get("num_classes") or 0)]
    base = provenance.get("base_checkpoint") or {}
    lines = [
        f"# Model card: {name or os.path.basename(training.get('output') or 'run')}",
        "",
        "## Model",
        f"- Task: {task.get('type', 'classification')}, {len(names)} classes: {', '.join(names)}",
        f"- Encoder: {encoder.get('preset') or encoder.get('vectors')} "
        f"(sequence length {encoder.get('sequence_length')}, pooling {encoder.get('pooling')}, "
        f"trainable {encoder.get('trainable')})",
    ]
    if base.get("path"):
        lines.append(f"- Base checkpoint: `{base['path']}`")
        for file, digest in sorted((base.get("files") or {}).items()):
            lines.append(f"  - `{file}` sha256 `{digest}`")
    lines.append(f"- Licence of the base checkpoint: {base.get('licence') or 'not declared in its folder: check its source'}")
    lines += ["", "## Intended use", provenance.get("intended_use") or (
        "Classifying texts like those in the training data into the classes above; check "
        "it on your own data before relying on it."), "", "## Data"]
    recorded = provenance.get("data") or {}
    for split in ("train", "validation", "test"):
        if not data.get(split):
            continue
        entry = recorded.get(split) or {}
        rows = entry.get("rows_used")
        details = [f"{rows} rows used" if rows is not None else None,
                   f"limit {entry['limit']}" if entry.get("limit") is not None else None,
                   f"sha256 {_short_hash(entry.get('sha256'))}" if entry else None]
        detail = ", ".join(d for d in details if d)
        lines.append(f"- {split}: `{data[split]}`" + (f" ({detail})" if detail else ""))
    if data.get("tfds"):
        lines.append(f"- TFDS: `{data['tfds']}` (limit {data.get('limit')})")
    lines.append("- Licence of the data: that of its source (not recorded by ktransfer)")
    lines += [
        "",
        "## Training",
        f"- {training.get('epochs')} epochs, batch size {training.get('batch_size')}, "
        f"{training.get('optimizer')} at {training.get('learning_rate')} "
        f"({training.get('schedule')}), precision {training.get('precision')}, "
        f"strategy {training.get('strategy')}, seed {training.get('seed')}",
        f"- Optimizer steps: {metrics.get('steps')}",
        "",
        "## Results",
    ]
    if metrics.get("status") == "failed":
        failure = metrics.get("failure") or {}
        lines += [f"**Training failed**: {failure.get('reason')}. {failure.get('advice', '')}", ""]
    for split in ("validation", "test"):
        result = metrics.get(split)
        if not result:
            continue
        lines += [
            f"**{split}** ({result['examples']} examples): accuracy {result['accuracy']:.4f}, "
            f"macro F1 {result['macro_f1']:.4f}",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for label, row in result["per_class"].items():
            lines.append(
                f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | "
                f"{row['f1']:.4f} | {row['support']} |"
            )
        lines.append("")
    if mistakes:
        lines += [f"{mistakes['errors']} of {mistakes['examples']} {mistakes['split']} examples "
                  "are misclassified (the report lists the most confident).", ""]
    libraries = provenance.get("libraries") or {}
    lines += ["## Provenance", f"- Trained: {provenance.get('created') or 'not recorded'}"]
    if libraries:
        lines.append("- Libraries: " + ", ".join(
            f"{lib} {version}" for lib, version in libraries.items() if version))
    if provenance.get("python"):
        lines.append(f"- Python {provenance['python']}")
    lines += [
        "",
        "## Limitations",
        "Numbers hold for data like the evaluation set above; check the model on your "
        "own data before relying on it.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Markdown (the subset model_card writes) to HTML.
# --------------------------------------------------------------------------


def _inline(text):
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_to_html(markdown, heading_offset=0):
    """Render headings, paragraphs, (nested) bullet lists, tables, `code`, **bold**.

    The subset `model_card` writes; `heading_offset` demotes headings (the
    card's `#` becomes an `<h2>` inside the report page).
    """
    out, paragraph, table = [], [], []
    depth = 0

    def close_paragraph():
        if paragraph:
            out.append("<p>" + " ".join(_inline(p) for p in paragraph) + "</p>")
            paragraph.clear()

    def cells(row):
        return [cell.strip() for cell in row.strip().strip("|").split("|")]

    def close_table():
        if table:
            header, *rows = table
            rows = [r for r in rows if not re.fullmatch(r"[\s|:-]+", r)]
            out.append(
                "<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells(header)) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells(r)) + "</tr>"
                          for r in rows)
                + "</table>"
            )
            table.clear()

    def close_lists(level=0):
        nonlocal depth
        while depth > level:
            out.append("</li></ul>")
            depth -= 1

    def close_all():
        close_paragraph()
        close_table()
        close_lists()

    for line in markdown.splitlines():
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        bullet = re.match(r"^( *)- (.*)$", line)
        if heading:
            close_all()
            level = min(len(heading.group(1)) + heading_offset, 6)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif bullet:
            close_paragraph()
            close_table()
            level = len(bullet.group(1)) // 2 + 1
            if level > depth:
                while depth < level:
                    out.append("<ul>")
                    depth += 1
                out.append("<li>" + _inline(bullet.group(2)))
            else:
                close_lists(level)
                out.append("</li><li>" + _inline(bullet.group(2)))
        elif line.startswith("|"):
            close_paragraph()
            close_lists()
            table.append(line)
        elif not line.strip():
            close_all()
        else:
            close_table()
            close_lists()
            paragraph.append(line)
    close_all()
    return "\n".join(out)


def _html(run, plots, card):
    metrics = run["metrics"]
    evaluated = _evaluated(metrics) or {}
    title = html.escape(run["name"])
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>ktransfer report: {title}</title>",
        "<style>body{font-family:sans-serif;max-width:64em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
        "vertical-align:top}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}"
        ".failed{background:#fee;border:1px solid #c00;padding:.5em}</style></head><body>",
        f"<h1>ktransfer report: {title}</h1>",
    ]
    if metrics.get("status") == "failed":
        failure = metrics.get("failure") or {}
        parts.append(f'<p class="failed"><b>Training failed</b>: {html.escape(str(failure.get("reason")))}. '
                     f'{html.escape(failure.get("advice", ""))}</p>')
    if evaluated:
        split = "validation" if metrics.get("validation") else "test"
        parts.append(
            f"<p>{split.capitalize()}: accuracy <b>{evaluated['accuracy']:.4f}</b>, macro F1 "
            f"<b>{evaluated['macro_f1']:.4f}</b> on {evaluated['examples']} examples, after "
            f"{metrics.get('steps')} optimizer steps.</p>"
        )
    for file, caption in plots:
        parts.append(f'<h2>{caption}</h2><img src="{file}" alt="{caption}">')
    mistakes = run["mistakes"]
    if mistakes:
        parts.append("<h2>Misclassified examples</h2>")
        parts.append(
            f"<p>{mistakes['errors']} of {mistakes['examples']} {mistakes['split']} examples are "
            f"misclassified; the {min(MISTAKES_SHOWN, len(mistakes['shown']))} the model was "
            "surest about:</p>" if mistakes["errors"] else
            f"<p>None of the {mistakes['examples']} {mistakes['split']} examples is misclassified.</p>"
        )
        if mistakes["shown"]:
            parts.append("<table><tr><th>text</th><th>label</th><th>predicted</th>"
                         "<th>confidence</th></tr>")
            for row in mistakes["shown"][:MISTAKES_SHOWN]:
                label = row["label"] if isinstance(row["label"], str) else ", ".join(row["label"])
                predicted = (row["predicted"] if isinstance(row["predicted"], str)
                             else ", ".join(row["predicted"]))
                parts.append(
                    f"<tr><td>{html.escape(row['text'])}</td><td>{html.escape(label)}</td>"
                    f"<td>{html.escape(predicted)}</td><td>{row['confidence']:.3f}</td></tr>")
            parts.append("</table>")
    parts.append('<div class="model-card">' + markdown_to_html(card, heading_offset=1) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
