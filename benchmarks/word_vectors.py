"""Benchmark `WordVectors.load` against gensim, a Python loop and pandas.

Writes the real GloVe 6B 50d asset back out as `glove.6B.50d.txt` (once, in
`$KTRANSFER_HOME/bench`, byte-for-byte the layout of the published file), then
measures, each in a fresh subprocess so that time and peak memory are not
polluted by earlier runs:

* gensim `KeyedVectors.load_word2vec_format(..., no_header=True)`,
* a Python line loop (`split` + `np.asarray` per line),
* `pandas.read_csv(sep=" ", quoting=csv.QUOTE_NONE, header=None)`,
* `WordVectors.load` on the text file (time, peak additional RSS),
* `WordVectors.save` and the memory-mapped native `WordVectors.load`,
* a scaling run on synthetic files shaped like glove.6B.300d (100k and 200k
  rows x 300) to check linearity and extrapolate to the real 400k x 300 file.

Peak memory is `VmHWM` (peak RSS) minus the RSS right before the call, both
read from /proc/self/status in the child: tracemalloc cannot see numpy/arrow
buffers. The children import ktransfer (and so TensorFlow) before the RSS
baseline is read, so the import does not count towards the figure.

The machine may be shared: every time is the best (min) of `--repeats`
interleaved runs, medians are reported too, and so are CPU seconds (user +
system, all threads) which depend much less on other load than wall time. Our
loader parses on all cores (2 here), so on a busy machine its wall-time lead
shrinks; the load average before and after the run is part of the output.

Usage:
    python benchmarks/word_vectors.py            # full run (~3-5 minutes)
    python benchmarks/word_vectors.py --quick     # 100k rows, small scaling files

The last line printed is one JSON object with all figures.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ children


def _rss_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _cpu_seconds():
    """User + system CPU time of this process, all threads."""
    times = os.times()
    return times.user + times.system


def child(kind, path, extra):
    """Run one measurement; print {"seconds", "peak_mb", ...} as JSON."""
    result = {}
    if kind == "gensim":
        from gensim.models import KeyedVectors

        def run():
            return KeyedVectors.load_word2vec_format(path, no_header=True)
    elif kind == "loop":
        def run():
            words, rows = [], []
            with open(path, encoding="utf-8") as f:
                for line in f:
                    parts = line.rstrip().split(" ")
                    words.append(parts[0])
                    rows.append(np.asarray(parts[1:], dtype=np.float32))
            return words, np.stack(rows)
    elif kind == "pandas":
        import pandas as pd

        def run():
            return pd.read_csv(path, sep=" ", quoting=csv.QUOTE_NONE, header=None)
    else:
        from ktransfer.vectors import word_vectors
        import pyarrow.csv  # noqa: F401  (import cost is not load cost)
        import pyarrow.compute  # noqa: F401
        WordVectors = word_vectors.WordVectors
        if kind == "ours":
            def run():
                return WordVectors.load(path)
        elif kind == "ours_lookup":  # load + first lookup (builds the word index)
            def run():
                vectors = WordVectors.load(path)
                assert "movie" in vectors
                return vectors
        elif kind == "native":
            def run():
                return WordVectors.load(path)
        elif kind == "native_read_all":  # load + touch every byte of the matrix
            def run():
                vectors = WordVectors.load(path)
                float(np.asarray(vectors.matrix).sum(dtype=np.float64))
                return vectors
        elif kind == "save":
            vectors = WordVectors.load(path)

            def run():
                return vectors.save(extra)
        else:
            raise ValueError(kind)
    baseline = _rss_bytes("VmRSS")
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    value = run()
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = _cpu_seconds() - cpu_start
    result["peak_mb"] = (_rss_bytes("VmHWM") - baseline) / 1e6
    if kind in ("ours", "native"):
        result["rows"], result["dim"] = value.matrix.shape
        result["matrix_mb"] = value.matrix.nbytes / 1e6
        result["checksum"] = float(np.asarray(value.matrix, dtype=np.float64).sum())
    print(json.dumps(result))


def measure(kind, path, extra="", timeout=900):
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, str(path), extra]
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if output.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def repeated(kinds, path, repeats):
    """Interleave the runs of several kinds (fair on a shared machine)."""
    runs = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            runs[kind].append(measure(kind, path))
    summary = {}
    for kind, results in runs.items():
        seconds = [r["seconds"] for r in results]
        best = min(results, key=lambda r: r["seconds"])
        summary[kind] = {
            **best,
            "seconds": round(min(seconds), 4),
            "seconds_median": round(statistics.median(seconds), 4),
            "cpu_seconds": round(min(r["cpu_seconds"] for r in results), 4),
            "peak_mb": round(max(r["peak_mb"] for r in results), 1),
        }
    return summary


# ------------------------------------------------------------------- writers


def write_text(path, words, matrix, chunk=50_000):
    """`word v1 ... vd` lines with the shortest round-trip float32 digits
    (pyarrow's formatter: the same text as the published glove files)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    temporary = str(path) + ".partial"
    with open(temporary, "w", encoding="utf-8", newline="\n") as f:
        for start in range(0, len(words), chunk):
            block = matrix[start:start + chunk]
            columns = [pa.array(words[start:start + chunk], pa.string())]
            columns += [pc.cast(pa.array(block[:, j]), pa.string()) for j in range(block.shape[1])]
            f.write("\n".join(pc.binary_join_element_wise(*columns, " ").to_pylist()) + "\n")
    os.replace(temporary, path)


def synthetic_300d(path, rows, seed=0):
    """A file shaped like glove.6B.300d.txt: 300 values with ~5 significant
    digits (like GloVe's), in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    import pyarrow as pa
    import pyarrow.compute as pc

    temporary = str(path) + ".partial"
    with open(temporary, "w", encoding="utf-8", newline="\n") as f:
        for start in range(0, rows, 20_000):
            count = min(20_000, rows - start)
            block = np.round(rng.normal(scale=0.4, size=(count, 300)), 5).astype(np.float32)
            columns = [pa.array([f"w{start + i}" for i in range(count)], pa.string())]
            columns += [pc.cast(pa.array(block[:, j]), pa.string()) for j in range(300)]
            f.write("\n".join(pc.binary_join_element_wise(*columns, " ").to_pylist()) + "\n")
    os.replace(temporary, path)


# ---------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100k GloVe rows, 25k/50k-row scaling files, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per measurement (min is reported); default 3, quick 1")
    parser.add_argument("--workdir", default=None,
                        help="where the text files are written (default $KTRANSFER_HOME/bench)")
    parser.add_argument("--skip-gensim", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    from ktransfer import assets
    from ktransfer.vectors import word_vectors
    if not assets.is_cached("glove50"):
        sys.exit("GloVe asset not fetched; run `ktransfer assets fetch glove50`")
    repeats = args.repeats or (1 if args.quick else 3)
    workdir = args.workdir or os.path.join(assets.home(), "bench")
    os.makedirs(workdir, exist_ok=True)
    glove_rows = 100_000 if args.quick else 400_000
    scaling_rows = (25_000, 50_000) if args.quick else (100_000, 200_000)

    package = word_vectors.WordVectors.from_glove_package(assets.path("glove50"))
    words = package.words[:glove_rows]
    matrix = np.asarray(package.matrix[:glove_rows])
    text = os.path.join(workdir, f"glove.6B.50d.{glove_rows}.txt")
    if not os.path.isfile(text):
        print(f"writing {text} ...", file=sys.stderr)
        write_text(text, words, matrix)
    figures = {
        "file": os.path.basename(text),
        "file_mb": round(os.path.getsize(text) / 1e6, 1),
        "rows": glove_rows,
        "dim": 50,
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "load_average_before": round(os.getloadavg()[0], 2),
    }

    try:
        import gensim
        figures["gensim_version"] = gensim.__version__
        has_gensim = not args.skip_gensim
    except ImportError:
        figures["gensim_version"] = "not installed (pip install gensim)"
        has_gensim = False

    kinds = (["gensim"] if has_gensim else []) + ["ours", "pandas", "ours_lookup"]
    print(f"measuring {kinds} x {repeats} on {text} ...", file=sys.stderr)
    results = repeated(kinds, text, repeats)
    results.update(repeated(["loop"], text, 1))  # ~6 s a run; once is enough
    ours = results["ours"]
    figures["matches_asset"] = bool(
        np.isclose(ours["checksum"], float(matrix.sum(dtype=np.float64)), rtol=0, atol=1e-3)
        and ours["rows"] == glove_rows
    )
    for kind, result in results.items():
        figures[f"{kind}_seconds"] = result["seconds"]
        figures[f"{kind}_seconds_median"] = result["seconds_median"]
        figures[f"{kind}_cpu_seconds"] = result["cpu_seconds"]
        figures[f"{kind}_peak_mb"] = result["peak_mb"]
    figures["matrix_mb"] = round(ours["matrix_mb"], 1)
    figures["ours_peak_over_matrix"] = round(ours["peak_mb"] / ours["matrix_mb"], 2)
    if has_gensim:
        figures["speedup_vs_gensim"] = round(results["gensim"]["seconds"] / ours["seconds"], 1)
        figures["speedup_vs_gensim_median"] = round(
            results["gensim"]["seconds_median"] / ours["seconds_median"], 1
        )
        figures["cpu_time_ratio_vs_gensim"] = round(
            results["gensim"]["cpu_seconds"] / ours["cpu_seconds"], 1
        )
    figures["speedup_vs_loop"] = round(results["loop"]["seconds"] / ours["seconds"], 1)
    figures["speedup_vs_pandas"] = round(results["pandas"]["seconds"] / ours["seconds"], 2)

    native = tempfile.mkdtemp(prefix="native-", dir=workdir)
    try:
        save = measure("save", text, extra=native)
        native_results = repeated(["native", "native_read_all"], native, max(repeats, 3))
        figures["native_save_seconds"] = round(save["seconds"], 4)
        figures["native_load_seconds"] = native_results["native"]["seconds"]
        figures["native_load_peak_mb"] = native_results["native"]["peak_mb"]
        figures["native_load_read_all_seconds"] = native_results["native_read_all"]["seconds"]
        figures["native_matches_text"] = (
            native_results["native"]["checksum"] == ours["checksum"]
        )
        figures["speedup_native_vs_text"] = round(
            ours["seconds"] / native_results["native"]["seconds"], 1
        )
    finally:
        shutil.rmtree(native, ignore_errors=True)

    scaling = {}
    for rows in scaling_rows:
        path = os.path.join(workdir, f"synthetic.300d.{rows}.txt")
        if not os.path.isfile(path):
            print(f"writing {path} ...", file=sys.stderr)
            synthetic_300d(path, rows)
        result = repeated(["ours"], path, repeats)["ours"]
        scaling[rows] = result
        figures[f"scaling_300d_{rows}_rows_seconds"] = result["seconds"]
        figures[f"scaling_300d_{rows}_rows_cpu_seconds"] = result["cpu_seconds"]
        figures[f"scaling_300d_{rows}_rows_mb"] = round(os.path.getsize(path) / 1e6, 1)
        figures[f"scaling_300d_{rows}_rows_peak_over_matrix"] = round(
            result["peak_mb"] / result["matrix_mb"], 2
        )
    small, large = scaling_rows
    per_row = (scaling[large]["seconds"] - scaling[small]["seconds"]) / (large - small)
    fixed = scaling[small]["seconds"] - per_row * small
    figures["scaling_ratio_time"] = round(scaling[large]["seconds"] / scaling[small]["seconds"], 2)
    figures["scaling_ratio_cpu_time"] = round(
        scaling[large]["cpu_seconds"] / scaling[small]["cpu_seconds"], 2
    )
    figures["scaling_ratio_rows"] = round(large / small, 2)
    figures["estimated_glove_6B_300d_seconds"] = round(fixed + per_row * 400_000, 2)
    figures["estimated_glove_6B_300d_by_size_seconds"] = round(
        scaling[large]["seconds"] * 400_000 / large, 2
    )
    figures["estimated_glove_6B_300d_cpu_seconds"] = round(
        scaling[large]["cpu_seconds"] * 400_000 / large, 2
    )
    figures["load_average_after"] = round(os.getloadavg()[0], 2)

    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
