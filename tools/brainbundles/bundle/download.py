"""Publishing and downloading bundle zips, safely.

- The index (``bundles/model_info.json``, the model zoo's format): ``{"<name>_v<version>":
  {"source": URL, "checksum": sha256}}``; ``$BRAINBUNDLES_INDEX`` names another.
- Sources: a plain ``https://`` (or ``file://``) URL; a GitHub release asset,
  ``github:OWNER/REPO/TAG/FILE.zip``; a file on the Hugging Face Hub, ``hf:OWNER/REPO/FILE.zip``
  (``hf:OWNER/REPO@REVISION/FILE.zip``); a zip on disk. All of them go through one path.
- :func:`download_bundle`: a URL without a known sha256 is refused unless trusted; the zip is hashed
  while it downloads and compared before anything is extracted; every member is checked
  (:func:`brainbundles.bundle.package.check_archive`); the extracted bundle is verified
  (:func:`brainbundles.bundle.verify.verify_bundle`, strict: every file checksummed, no code beyond
  brainbundles' own, pickles hold only tensors) before it is moved into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import quote

from brainbundles.bundle.package import check_archive, extract_archive
from brainbundles.bundle.verify import verify_bundle
from brainbundles.fileio import sha256_file, write_json_atomic
from brainbundles.paths import index_file

__all__ = [
    "SOURCE_FILE",
    "read_index",
    "lookup",
    "source_url",
    "cache_dir",
    "download_bundle",
    "publish_bundle",
]

logger = logging.getLogger("brainbundles")

#: what a downloaded bundle records about where it came from (a hidden file, not part of the bundle)
SOURCE_FILE = ".brainbundles-source.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_index(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """The index's entries, each checked to have a source and a sha256."""
    path = Path(path) if path is not None else index_file()
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    for key, entry in index.items():
        if (
            not isinstance(entry, dict)
            or "source" not in entry
            or not _SHA256.fullmatch(str(entry.get("checksum")))
        ):
            raise ValueError(f"{path}: entry {key!r} needs a 'source' and a 64-hex-digit 'checksum'")
    return index


def lookup(name: str, index: dict[str, dict] | None = None) -> tuple[str, dict] | None:
    """An index entry by key (``name_v1.2.3``) or by bundle name (its highest numeric version);
    ``None`` if the index has neither."""
    index = read_index() if index is None else index
    if name in index:
        return name, index[name]
    versions = {}
    for key in index:
        m = re.fullmatch(re.escape(name) + r"_v(\d+(?:\.\d+)*)", key)
        if m:
            versions[tuple(int(p) for p in m[1].split("."))] = key
    if not versions:
        return None
    key = versions[max(versions)]
    return key, index[key]


def source_url(source: str) -> str:
    """A download URL from any source form (see the module docstring)."""
    if source.startswith("github:"):
        parts = source[len("github:") :].split("/")
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"source: {source!r}: a GitHub release asset is github:OWNER/REPO/TAG/FILE.zip")
        owner, repo, tag, name = parts
        return f"https://github.com/{owner}/{repo}/releases/download/{quote(tag)}/{quote(name)}"
    if source.startswith("hf:"):
        m = re.fullmatch(r"hf:([^/@]+)/([^/@]+)(?:@([^/]+))?/(.+)", source)
        if not m:
            raise ValueError(
                f"source: {source!r}: a Hugging Face Hub file is hf:OWNER/REPO[@REVISION]/FILE.zip"
            )
        owner, repo, revision, name = m.groups()
        return f"https://huggingface.co/{owner}/{repo}/resolve/{quote(revision or 'main')}/{quote(name)}"
    if re.match(r"(https?|file)://", source):
        return source
    if Path(source).expanduser().is_file():
        return Path(source).expanduser().resolve().as_uri()
    raise ValueError(
        f"source: {source!r} is not a URL (https://..., github:..., hf:...), a zip file or a published bundle"
    )


def cache_dir() -> Path:
    """Where downloaded bundles are kept: ``$BRAINBUNDLES_CACHE`` or ``~/.cache/brainbundles``."""
    env = os.environ.get("BRAINBUNDLES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "brainbundles"


def _fetch(url: str, dest: Path, expected: str | None, timeout: float = 60.0) -> str:
    """Stream ``url`` into ``dest``, hashing as it goes, with a progress line on stderr; returns the
    sha256. A ``dest`` already there (a download that was cut off) is resumed with an HTTP range
    request, or started again where the server does not do ranges. An interrupted download is kept
    for the next try when ``expected`` is known; on a mismatch with ``expected`` it is removed."""
    digest, done, last = hashlib.sha256(), 0, 0.0
    if dest.is_file():
        with open(dest, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
                done += len(block)
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if done and getattr(response, "status", None) != 206:  # no range support: start again
                digest, done = hashlib.sha256(), 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length else 0
            with open(dest, "ab" if done else "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if time.monotonic() - last > 1 or done == total:
                        last = time.monotonic()
                        share = f" ({100 * done / total:.0f}%)" if total else ""
                        print(f"\rdownloading {url}: {done / 2**20:.1f} MiB{share}", end="", file=sys.stderr)
            if total and done < total:
                raise OSError(f"the connection closed at byte {done} of {total}")
        print(file=sys.stderr)
    except OSError as e:  # URLError, HTTPError and socket timeouts are OSErrors
        if expected is None or not done:
            dest.unlink(missing_ok=True)
            raise ValueError(f"{url}: download failed ({e})") from None
        raise ValueError(
            f"{url}: download failed after {done / 2**20:.1f} MiB ({e}); run the same command again to resume"
        ) from None
    sha = digest.hexdigest()
    if expected is not None and sha != expected:
        dest.unlink(missing_ok=True)
        raise ValueError(
            f"{url}: sha256 is {sha}, expected {expected}; the file was deleted and nothing was extracted"
        )
    return sha


def _cached(folder: Path, sha: str) -> Path | None:
    """A bundle already unpacked in ``folder`` from the zip with this sha256."""
    for record in sorted(folder.glob(f"*/{SOURCE_FILE}")):
        try:
            if json.loads(record.read_text()).get("sha256") == sha:
                return record.parent
        except (OSError, ValueError):
            continue
    return None


def download_bundle(
    source: str,
    sha256: str | None = None,
    dir: str | os.PathLike | None = None,
    trust: bool = False,
    log=print,
) -> Path:
    """Download (or find in the cache) a bundle zip, check it, unpack and verify it; returns the bundle
    folder, ``<dir>/<name>``. ``dir`` defaults to ``cache_dir()/<sha256[:16]>``.

    ``source`` is a published bundle's name (its URL and sha256 come from the index) or any source form
    (module docstring), for which ``sha256`` must be given, unless ``trust``. ``trust`` also lets a
    bundle's configs hold code that brainbundles' own bundles do not."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"sha256: expected 64 hex digits, got {sha256!r}")
    found = lookup(source) if not re.match(r"[a-z]+:", source) and not Path(source).exists() else None
    if found is not None:
        key, entry = found
        if sha256 is not None and sha256 != entry["checksum"]:
            raise ValueError(f"sha256: {sha256} is not the index's checksum for {key} ({entry['checksum']})")
        url, sha256 = source_url(entry["source"]), entry["checksum"]
    else:
        url = source_url(source)
        if sha256 is None and not trust:
            raise ValueError(
                f"{source}: no sha256 is known for it, so it was not downloaded: pass --sha256 with the "
                "checksum its publisher gives, or --trust to accept whatever it serves"
            )
    if sha256 is not None:
        folder = Path(dir) if dir is not None else cache_dir() / sha256[:16]
        if folder.is_dir() and (hit := _cached(folder, sha256)) is not None:
            log(f"using the copy of {url} in {hit}")
            verify_bundle(hit, trust=trust, strict=True, log=lambda _: None)
            return hit
    staging = cache_dir() / "downloads"
    staging.mkdir(parents=True, exist_ok=True)
    if sha256 is not None:  # named by its checksum, so that a cut-off download resumes
        zip_path = staging / f"{sha256}.zip.part"
    else:
        fd, part = tempfile.mkstemp(dir=staging, prefix=".download-", suffix=".zip.part")
        os.close(fd)
        zip_path = Path(part)
    extracted, keep = None, False
    try:
        try:
            actual = _fetch(url, zip_path, sha256)
        except ValueError:
            keep = zip_path.is_file()  # a resumable partial download
            raise
        if sha256 is None:
            log(f"{url}: sha256 {actual} (trusted without a checksum)")
        folder = Path(dir) if dir is not None else cache_dir() / actual[:16]
        name = check_archive(zip_path)
        target = folder / name
        if target.exists():
            if _cached(folder, actual) == target:
                verify_bundle(target, trust=trust, strict=True, log=lambda _: None)
                return target
            raise ValueError(
                f"{target}: already exists (from another source); remove it or pass another --dir"
            )
        extracted = extract_archive(zip_path, folder)
        verify_bundle(extracted, trust=trust, strict=True, log=log)
        write_json_atomic({"source": url, "sha256": actual, "trusted": bool(trust)}, extracted / SOURCE_FILE)
        os.replace(extracted, target)
        log(f"{url} -> {target}")
        return target
    finally:
        if not keep:
            zip_path.unlink(missing_ok=True)
        if extracted is not None and extracted.parent.exists():
            shutil.rmtree(extracted.parent, ignore_errors=True)


def publish_bundle(
    zip_path: str | os.PathLike, source: str, index: str | os.PathLike | None = None
) -> tuple[str, dict]:
    """Add a packaged bundle to the index: ``<name>_v<version>`` -> its download URL (``source``, any
    source form) and sha256. The upload itself is the publisher's (``brainbundles publish`` prints the
    commands). Returns the key and the entry."""
    zip_path = Path(zip_path)
    name = check_archive(zip_path)
    with zipfile.ZipFile(zip_path) as z:
        meta = json.loads(z.read(f"{name}/configs/metadata.json"))
    if "files_sha256" not in meta:
        raise ValueError(f"{zip_path}: the bundle in it was not exported (no files_sha256)")
    key = f"{name}_v{meta['version']}"
    entry = {"source": source_url(source), "checksum": sha256_file(zip_path)}
    path = Path(index) if index is not None else index_file()
    entries = read_index(path)
    if key in entries and entries[key] != entry:
        raise ValueError(
            f"{path}: {key} is already published with another source or checksum; bump the version"
        )
    entries[key] = entry
    write_json_atomic(dict(sorted(entries.items())), path)
    return key, entry
