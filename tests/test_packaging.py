"""The wheel carries what an installed brainbundles needs: the bundles (with shipped weights and the
index), the metadata schema and the config source; and nothing a bundle must not share. CI installs
this wheel in a fresh virtual environment and runs verify, package, download and infer from it
(``.ci/run``)."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from brainbundles.paths import BUNDLE_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_bundles_schema_and_config_source(tmp_path):
    # built from a copy of the sources, so no build folder is left in (or reused from) the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("tools", "bundles"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("brainbundles-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "brainbundles/paths.py",
        "brainbundles/bundle/meta_schema.json",
        "brainbundles/bundles/model_info.json",
    } <= names
    for name in BUNDLE_NAMES.values():
        for f in (
            "configs/train.json",
            "configs/inference.json",
            "configs/metadata.json",
            "configs/logging.conf",
            "LICENSE",
        ):
            assert f"brainbundles/bundles/{name}/{f}" in names, (name, f)
        assert f"brainbundles/bundle/config_source/{name}.json" in names
    # the shipped weights travel, and every file the tissue bundle's checksums list
    tissue = ROOT / "bundles" / BUNDLE_NAMES["tissue"]
    listed = json.loads((tissue / "configs" / "metadata.json").read_text())["files_sha256"]
    assert "models/model.safetensors" in listed
    for f in listed:
        assert f"brainbundles/bundles/{tissue.name}/{f}" in names, f
    bundled = [n.split("/", 3)[-1] for n in names if n.startswith("brainbundles/bundles/")]
    assert not [n for n in bundled if n.endswith(".pt") or n.startswith(("eval/", "data/")) or "/." in n]
