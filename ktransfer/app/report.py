"""`write_report`: an HTML page and a model card for a training run.

Reads what `kt.train` leaves in its run folder (`config.yaml`, `history.csv`,
`metrics.json`) and writes `RUN_DIR/report/`:

- `curves.png`: loss and accuracy per epoch (training and validation);
- `confusion_matrix.png`: counts, true class by predicted class;
- `per_class.png`: precision, recall and F1 per class;
- `index.html`: the three plots and the numbers, one self-contained page;
- `model_card.md`: data, encoder, training set-up and results in Markdown.

Plots are drawn with matplotlib (Agg backend, no display needed).

```python
from ktransfer.app.report import write_report
write_report("runs/sst2")   # -> "runs/sst2/report/index.html"
```
"""

import html
import json
import os
import shutil
import tempfile


def write_report(run_dir, output=None):
    """Write the report of `run_dir`; returns the path of `index.html`."""
    import yaml

    from ktransfer.app.train import read_history, require_run_files

    run_dir = os.path.abspath(os.fspath(run_dir))
    config_file, metrics_file = require_run_files(run_dir, ["config.yaml", "metrics.json"])

    with open(config_file, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    with open(metrics_file, encoding="utf-8") as f:
        metrics = json.load(f)
    history = read_history(run_dir)

    output = os.path.abspath(output or os.path.join(run_dir, "report"))
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".report-")
    try:
        plots = _plots(history, metrics, staging)
        card = model_card(config, metrics, history)
        with open(os.path.join(staging, "model_card.md"), "w", encoding="utf-8") as f:
            f.write(card)
        with open(os.path.join(staging, "index.html"), "w", encoding="utf-8") as f:
            f.write(_html(config, metrics, plots, card))
        if os.path.exists(output):
            shutil.rmtree(output)
        os.rename(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return os.path.join(output, "index.html")


def _evaluated(metrics):
    return metrics.get("validation") or metrics.get("test")


def _plots(history, metrics, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    epochs = [e + 1 for e in history.get("epoch", [])]
    if epochs:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for axis, name in zip(axes, ("loss", "accuracy")):
            for key, label in ((name, "training"), (f"val_{name}", "validation")):
                if key in history:
                    axis.plot(epochs, history[key], marker="o", label=label)
            axis.set_xlabel("epoch")
            axis.set_title(name)
            axis.grid(alpha=0.3)
            axis.legend()
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
        axis.set_title("Confusion matrix")
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
        axis.set_title("Per-class metrics")
        figure.tight_layout()
        figure.savefig(os.path.join(folder, "per_class.png"), dpi=100)
        plt.close(figure)
        written.append(("per_class.png", "Per-class metrics"))
    return written


def model_card(config, metrics, history=None):
    """A Markdown model card: intended use, data, encoder, training, results."""
    encoder = config.get("encoder", {})
    task = config.get("task", {})
    data = config.get("data", {})
    training = config.get("training", {})
    names = task.get("labels") or [str(i) for i in range(task.get("num_classes") or 0)]
    lines = [
        "# Model card",
        "",
        "## Model",
        f"- Task: {task.get('type', 'classification')}, {len(names)} classes: {', '.join(names)}",
        f"- Encoder: {encoder.get('preset') or encoder.get('vectors')} "
        f"(sequence length {encoder.get('sequence_length')}, pooling {encoder.get('pooling')}, "
        f"trainable {encoder.get('trainable')})",
        "",
        "## Data",
    ]
    for split in ("train", "validation", "test"):
        if data.get(split):
            lines.append(f"- {split}: `{data[split]}`")
    if data.get("tfds"):
        lines.append(f"- TFDS: `{data['tfds']}`")
    lines += [
        "",
        "## Training",
        f"- {training.get('epochs')} epochs, batch size {training.get('batch_size')}, "
        f"{training.get('optimizer')} at {training.get('learning_rate')} "
        f"({training.get('schedule')}), precision {training.get('precision')}, "
        f"strategy {training.get('strategy')}",
        f"- Optimizer steps: {metrics.get('steps')}",
        "",
        "## Results",
    ]
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
        for name, row in result["per_class"].items():
            lines.append(
                f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | "
                f"{row['f1']:.4f} | {row['support']} |"
            )
        lines.append("")
    lines += [
        "## Limitations",
        "Numbers hold for data like the evaluation set above; check the model on your "
        "own data before relying on it.",
        "",
    ]
    return "\n".join(lines)


def _html(config, metrics, plots, card):
    evaluated = _evaluated(metrics) or {}
    title = html.escape(os.path.basename(config.get("training", {}).get("output", "run")))
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>ktransfer report: {title}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>ktransfer report: {title}</h1>",
    ]
    if evaluated:
        parts.append(
            f"<p>Accuracy <b>{evaluated['accuracy']:.4f}</b>, macro F1 "
            f"<b>{evaluated['macro_f1']:.4f}</b> on {evaluated['examples']} examples.</p>"
        )
        parts.append("<table><tr><th>class</th><th>precision</th><th>recall</th>"
                     "<th>F1</th><th>support</th></tr>")
        for name, row in evaluated["per_class"].items():
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td>{row['precision']:.4f}</td>"
                f"<td>{row['recall']:.4f}</td><td>{row['f1']:.4f}</td><td>{row['support']}</td></tr>"
            )
        parts.append("</table>")
    for file, caption in plots:
        parts.append(f"<h2>{caption}</h2><img src=\"{file}\" alt=\"{caption}\">")
    parts.append("<h2>Model card</h2><pre>" + html.escape(card) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
