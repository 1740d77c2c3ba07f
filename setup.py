"""Packaging: everything is in pyproject.toml except one step, shipping the bundles in the wheel.

The repository keeps the bundles in ``bundles/`` (beside ``tools/``); a built wheel carries them as the
package data ``brainbundles/bundles`` (configs, docs, licences, shipped weights, the index), which
``brainbundles.paths.bundles_dir`` finds with ``importlib.resources``. An editable install reads
``bundles/`` in place, so nothing is copied for it.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: never shipped: data, outputs, training checkpoints (pickles), caches, hidden files
_LEFT_OUT = shutil.ignore_patterns("data", "eval", "runs", "*.pt", "__pycache__", ".*")


class build_py_with_bundles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        src = Path(__file__).resolve().parent / "bundles"
        dst = Path(self.build_lib) / "brainbundles" / "bundles"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=_LEFT_OUT)


setup(cmdclass={"build_py": build_py_with_bundles})
