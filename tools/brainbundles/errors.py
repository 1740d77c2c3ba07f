"""The errors brainbundles raises on purpose, in one place. Imports nothing of brainbundles.

Each is a ``ValueError`` (or, for a failed training process, a ``CalledProcessError``) whose message
names the file or process and the problem, so the command line can print it as one line.
"""

from __future__ import annotations

import subprocess

__all__ = ["InputError", "UnsafeFileError", "ChecksumError", "TrainingProcessError"]


class InputError(ValueError):
    """A bad input case; the message always starts with the offending file path."""


class UnsafeFileError(ValueError):
    """A file would run code, or reach outside its folder, if it were used."""


class ChecksumError(ValueError):
    """A weights file differs from the sha256 its bundle's ``large_files.yml`` lists for it."""


class TrainingProcessError(subprocess.CalledProcessError):
    """A `torchrun` training that failed; the message ends with each process's last log lines (which
    `torchrun` keeps under the bundle's ``eval/logs/torchrun``), so the failing rank's error is not lost in
    the interleaved console output."""

    def __str__(self) -> str:
        return super().__str__() + ("\n" + self.stderr if self.stderr else "")
