"""Bundle zips: packaging an exported bundle, and checking and unpacking one safely.

A package is a model-zoo-style zip with one top-level folder, the bundle's name, holding the files
that export checksummed (:func:`brainbundles.paths.bundle_files`: never pickles, data or
outputs). It is written
byte-for-byte reproducibly (sorted members, fixed timestamps and modes), with ``FILE.zip.sha256``
beside it in ``sha256sum`` format.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from brainbundles.bundle.verify import verify_checksums
from brainbundles.errors import UnsafeFileError
from brainbundles.fileio import atomic_write, sha256_file, write_text_atomic
from brainbundles.paths import bundle_files

__all__ = [
    "BUNDLE_NAME",
    "MAX_COMPRESSION_RATIO",
    "MAX_UNPACKED_BYTES",
    "package_bundle",
    "check_archive",
    "extract_archive",
]

#: a bundle name: what the zip's top-level folder and file name are made of
BUNDLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: a zip that would unpack to more than this is refused (a "zip bomb"): 1 GiB holds a five-fold
#: ensemble of 100 MB networks with their exported programs; the tissue bundle ships 17 MB
MAX_UNPACKED_BYTES = 2**30
#: a member larger than :data:`_RATIO_CHECK_BYTES` that unpacks to more than this many times its
#: compressed size is refused: weights hardly compress (about 1.1:1), configs about 5:1, zeros 1000:1
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECK_BYTES = 1 << 20
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def package_bundle(
    bundle_root: str | os.PathLike, out: str | os.PathLike | None = None, name: str | None = None
) -> tuple[Path, str]:
    """Zip an exported bundle as ``<name>/...`` into ``out`` (default ``<name>_v<version>.zip`` in the
    current folder) and write ``out.sha256``; returns the zip's path and sha256. The zip holds the
    metadata and exactly the files its checksums cover; a file added since is an error.

    ``name`` defaults to the bundle folder's name. The bundle must have been exported
    (``brainbundles export``) and be unchanged since: every file's sha256 must match the metadata's."""
    root = Path(bundle_root).resolve()
    name = name or root.name
    if not BUNDLE_NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} is not a bundle name (letters, digits, '_', '.', '-')")
    meta_path = root / "configs" / "metadata.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not a bundle folder")
    meta = json.loads(meta_path.read_text())
    if "files_sha256" not in meta:
        raise ValueError(
            f"{root}: not exported (no files_sha256 in {meta_path}); run `brainbundles export` first"
        )
    verify_checksums(root)
    files = sorted({*meta["files_sha256"], "configs/metadata.json"})
    added = sorted(set(bundle_files(root)) - set(files))
    if added:
        raise ValueError(f"{root}: files added after export, not in its checksums: {added}; export again")
    out = Path(out) if out is not None else Path(f"{name}_v{meta['version']}.zip")

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
            for rel in files:
                info = zipfile.ZipInfo(f"{name}/{rel}", date_time=_FIXED_TIME)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(root / rel, "rb") as src, z.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)

    atomic_write(out, write)
    digest = sha256_file(out)
    write_text_atomic(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n")
    return out, digest


def check_archive(zip_path: str | os.PathLike) -> str:
    """Check every member of a bundle zip before anything is extracted; returns the top-level folder
    (the bundle's name). Raises :class:`UnsafeFileError` for a member that would land outside the
    target folder (absolute path, drive letter, backslash, ``..``), a link or other non-regular file,
    a duplicate name, or an archive that would unpack to more than :data:`MAX_UNPACKED_BYTES`; and
    ``ValueError`` for a zip that is not one bundle folder."""
    zip_path = Path(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as z:
            infos = z.infolist()
    except zipfile.BadZipFile as e:
        raise ValueError(f"{zip_path}: not a zip file ({e})") from None
    seen, tops, total = set(), set(), 0
    for info in infos:
        name = info.filename
        refuse = f"{zip_path}: refused, nothing extracted: member {name!r}"
        if name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name):
            raise UnsafeFileError(f"{refuse} has an absolute path")
        parts = PurePosixPath(name).parts
        if ".." in parts or not parts:
            raise UnsafeFileError(f"{refuse} would land outside the target folder ('..')")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 where the zip records no file type
        if kind == stat.S_IFLNK:
            raise UnsafeFileError(f"{refuse} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeFileError(f"{refuse} is not a regular file")
        key = name.rstrip("/")
        if key in seen:
            raise UnsafeFileError(f"{refuse} appears twice")
        seen.add(key)
        if info.file_size > _RATIO_CHECK_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
            1, info.compress_size
        ):
            raise UnsafeFileError(
                f"{refuse} would unpack {info.compress_size} bytes to {info.file_size} "
                f"(more than {MAX_COMPRESSION_RATIO}:1, as a zip bomb does)"
            )
        total += info.file_size
        tops.add(parts[0])
    if total > MAX_UNPACKED_BYTES:
        raise UnsafeFileError(
            f"{zip_path}: refused, nothing extracted: it would unpack to {total} bytes, more than the "
            f"{MAX_UNPACKED_BYTES} a bundle may hold"
        )
    if len(tops) != 1 or not BUNDLE_NAME.fullmatch(next(iter(tops))):
        raise ValueError(
            f"{zip_path}: not a bundle zip (one top-level folder expected, found {sorted(tops)})"
        )
    top = next(iter(tops))
    if f"{top}/configs/metadata.json" not in seen:
        raise ValueError(f"{zip_path}: not a bundle zip (no {top}/configs/metadata.json)")
    return top


def extract_archive(zip_path: str | os.PathLike, parent: str | os.PathLike) -> Path:
    """Check (:func:`check_archive`), then extract a bundle zip into a new temporary folder inside
    ``parent``; returns the extracted bundle folder (``<tmp>/<name>``). The caller moves it into place
    once it is verified, or removes the temporary folder."""
    top = check_archive(zip_path)
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=".extract-"))
    try:
        with zipfile.ZipFile(zip_path) as z:
            for info in z.infolist():
                target = tmp.joinpath(*PurePosixPath(info.filename).parts)
                if not target.resolve().is_relative_to(tmp.resolve()):  # checked above; belt and braces
                    raise UnsafeFileError(f"{zip_path}: refused: member {info.filename!r} leaves the folder")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "xb") as dst:
                    written = 0
                    while block := src.read(1 << 20):
                        written += len(block)
                        if written > info.file_size:  # the zip's directory understated it: stop here
                            raise UnsafeFileError(
                                f"{zip_path}: refused: member {info.filename!r} unpacks to more than the "
                                f"{info.file_size} bytes the zip declares"
                            )
                        dst.write(block)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp / top
