"""Sharing a trained bundle end to end: train a tiny bundle, export, package, serve the zip over HTTP
on 127.0.0.1, download it by URL and sha256 into a fresh folder, verify, infer from the URL; the
output equals the original bundle's voxel for voxel. Also: the exported program runs where
brainbundles cannot be imported, and every bundle in bundles/ passes `brainbundles verify`."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle import download_bundle, export_bundle, package_bundle, verify_bundle
from brainbundles.bundle.configs import build_network, example_input
from brainbundles.bundle.export import next_version
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.paths import BUNDLE_NAMES, EXPORTED_FILE, bundles_dir
from brainbundles.workflows import copy_bundle, run_inference, run_training

NAME = "brain_tissue_mri_segmentation"
TINY = {"network_def#features": [4, 8, 16], "network_def#dropout": 0.0, "patch_size": [32, 32, 32]}


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BRAINBUNDLES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def server(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base URL, request log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            requests.append(self.path)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{srv.server_address[1]}", requests
    srv.shutdown()
    srv.server_close()


def test_train_export_package_serve_download_verify_infer(tmp_path, cache, server):
    folder, base, requests = server
    data = write_phantom_dataset(
        "tissue",
        tmp_path / "data",
        cases=4,
        test_cases=2,
        seed=5,
        shape=(40, 48, 40),
        spacing=(1.5, 1.5, 1.5),
        folds=2,
    )
    bundle = copy_bundle("tissue", tmp_path / "mine" / NAME, TINY)
    run_training(
        bundle,
        data,
        data / "datalist.json",
        epochs=1,
        val_interval=1,
        num_workers=0,
        num_samples=1,
        batch_size=2,
    )
    run_inference(bundle, datalist=data / "datalist.json", output_dir=tmp_path / "original")

    before = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    meta = export_bundle(bundle, changelog="tiny test bundle")
    after = next_version(before)  # e.g. 0.2.0 -> 0.2.1
    assert meta["version"] == after and meta["changelog"][after] == "tiny test bundle"
    assert meta["training_data"]["training_cases"] == 2 and meta["training_data"]["channels"] == ["T1"]
    assert meta["training_data"]["spacing_mm"]["median"] == [1.5, 1.5, 1.5]
    assert meta["exported_model"]["input_shape"] == ["batch", 1, 32, 32, 32]
    assert meta["exported_model"]["max_relative_difference"] <= 1e-4
    assert {"models/model.safetensors", EXPORTED_FILE, "configs/inference.json", "configs/train.json"} <= set(
        meta["files_sha256"]
    )
    assert not any(f.endswith(".pt") for f in meta["files_sha256"])  # no pickle is shared

    zip_path, sha = package_bundle(bundle, folder / f"{NAME}_v0.1.1.zip")
    assert (folder / f"{NAME}_v0.1.1.zip.sha256").read_text().split()[0] == sha
    again, sha_again = package_bundle(bundle, tmp_path / "again.zip")  # reproducible bytes
    assert sha_again == sha

    url = f"{base}/{zip_path.name}"
    fresh = tmp_path / "fresh"
    got = download_bundle(url, sha256=sha, dir=fresh)
    assert got == fresh / NAME and requests == [f"/{zip_path.name}"]
    assert not (got / "models" / "model.pt").exists() and (got / "models" / "model.safetensors").is_file()
    lines: list[str] = []
    report = verify_bundle(got, strict=True, log=lines.append)
    assert report["checksums"] == len(meta["files_sha256"]) and "exported_difference" not in report
    assert any("not loaded" in line for line in lines)  # a download's program is only inspected
    report = verify_bundle(got, strict=True, run_exported=True, log=lines.append)  # we made it: run it
    assert report["exported_difference"] <= 1e-4

    # infer straight from the URL: downloaded into the cache, verified, run
    run_inference(url, sha256=sha, datalist=data / "datalist.json", output_dir=tmp_path / "from_url")
    run_inference(url, sha256=sha, datalist=data / "datalist.json", output_dir=tmp_path / "cached")
    assert len(requests) == 2  # the second run used the cached copy
    originals = sorted((tmp_path / "original").rglob("*.nii.gz"))
    assert len(originals) == 2
    for orig in originals:
        for other in ("from_url", "cached"):
            copy = tmp_path / other / orig.relative_to(tmp_path / "original")
            a, b = nib.load(orig), nib.load(copy)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            np.testing.assert_array_equal(a.affine, b.affine)


_STANDALONE = """
import sys, json
sys.modules["brainbundles"] = None  # any import of brainbundles fails
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("tools")]
try:
    import brainbundles
except ImportError:
    pass
else:
    raise SystemExit("brainbundles is importable")
import torch
program = torch.export.load(sys.argv[1]).module()
x = torch.load(sys.argv[2], weights_only=True)
torch.save(program(x), sys.argv[3])
"""


@pytest.mark.parametrize("task", sorted(BUNDLE_NAMES))
def test_exported_program_runs_without_brainbundles(task, tmp_path, untrained_export):
    overrides = {
        "tissue": None,
        "tumour": {"network_def#init_filters": 8, "patch_size": [32, 32, 32]},
        "wmh": {"network_def#features": [4, 8, 16], "patch_size": [32, 32, 32]},
        "ms": {"network_def#features": [4, 8, 16], "patch_size": [32, 32, 32]},
    }[task]
    bundle = untrained_export(tmp_path / task, task, overrides)
    net = build_network(bundle)
    x = example_input(bundle, batch=3, seed=7)
    torch.save(x, tmp_path / "x.pt")
    subprocess.run(
        [
            sys.executable,
            "-c",
            _STANDALONE,
            str(bundle / EXPORTED_FILE),
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.pt"),
        ],
        check=True,
        cwd=tmp_path,
    )
    y = torch.load(tmp_path / "y.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(y, net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(p.name for p in bundles_dir().iterdir() if (p / "configs").is_dir()))
def test_every_bundle_passes_verify(name, capsys):
    from brainbundles.cli import main

    main(["verify", name])
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("verified (wrote nothing)")
    assert "every reference resolves" in out and "only brainbundles' own expressions" in out


def test_index_in_repository_is_valid():
    from brainbundles.bundle import read_index

    index = json.loads((bundles_dir() / "model_info.json").read_text())
    assert read_index(bundles_dir() / "model_info.json") == index


def test_export_that_is_refused_writes_nothing(tmp_path, untrained_export):
    bundle = untrained_export(tmp_path / NAME, export=False)
    meta_before = (bundle / "configs" / "metadata.json").read_text()
    with pytest.raises(ValueError, match="already in"):
        export_bundle(bundle, version="0.1.0")  # the bundle's current version
    (tmp_path / "bad.json").write_text('{"per_case": {}}')
    with pytest.raises(ValueError, match="bad.json: not a metrics report"):
        export_bundle(bundle, metrics=tmp_path / "bad.json")
    assert (bundle / "configs" / "metadata.json").read_text() == meta_before
    assert sorted(p.name for p in (bundle / "models").iterdir()) == ["model.safetensors"]
