"""Where bundles come from: source forms (github:, hf:, URLs, zip paths), the index of published bundles
(publish, read, look up by name and version), downloading by name through the index and the cache, and
the shape checks on a zip. No network: the only downloads are file:// URIs."""

from __future__ import annotations

import hashlib
import json
import stat
import types
import zipfile
from pathlib import Path

import pytest

from brainbundles.bundle.download import (
    SOURCE_FILE,
    cache_dir,
    download_bundle,
    lookup,
    publish_bundle,
    read_index,
    source_url,
)
from brainbundles.bundle.export import next_version
from brainbundles.bundle.package import check_archive, package_bundle
from brainbundles.paths import index_file

NAME = "brain_tissue_mri_segmentation"
SHA = "ab" * 32


def quiet(*_args) -> None:
    """A ``log`` that drops the download and verification lines."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, untrained_export) -> types.SimpleNamespace:
    """An exported bundle (random weights) and its package: ``root``, ``zip``, ``sha``, ``version``."""
    tmp = tmp_path_factory.mktemp("exported")
    root = untrained_export(tmp / NAME)
    zip_path, sha = package_bundle(root, tmp / "good.zip")
    version = json.loads((root / "configs" / "metadata.json").read_text())["version"]
    return types.SimpleNamespace(root=root, zip=zip_path, sha=sha, version=version)


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch) -> types.SimpleNamespace:
    """Nothing touches ~/.cache or the repository's index; the working folder is empty."""
    monkeypatch.setenv("BRAINBUNDLES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINBUNDLES_INDEX", str(tmp_path / "index.json"))
    monkeypatch.chdir(tmp_path)
    return types.SimpleNamespace(cache=tmp_path / "cache", index=tmp_path / "index.json")


# source forms


@pytest.mark.parametrize(
    ("source", "url"),
    [
        (
            "github:owner/repo/v1.0.0/bundle_v1.0.0.zip",
            "https://github.com/owner/repo/releases/download/v1.0.0/bundle_v1.0.0.zip",
        ),
        (
            "github:owner/repo/release 1+cpu/my bundle.zip",
            "https://github.com/owner/repo/releases/download/release%201%2Bcpu/my%20bundle.zip",
        ),
        ("hf:owner/repo/bundle.zip", "https://huggingface.co/owner/repo/resolve/main/bundle.zip"),
        ("hf:owner/repo@v2/bundle.zip", "https://huggingface.co/owner/repo/resolve/v2/bundle.zip"),
        (
            "hf:owner/repo@0123abc/sub/dir/b.zip",
            "https://huggingface.co/owner/repo/resolve/0123abc/sub/dir/b.zip",
        ),
        ("https://example.org/a/b.zip?x=1", "https://example.org/a/b.zip?x=1"),
        ("http://127.0.0.1:8000/b.zip", "http://127.0.0.1:8000/b.zip"),
        ("file:///srv/bundles/b.zip", "file:///srv/bundles/b.zip"),
    ],
)
def test_source_url(source, url):
    assert source_url(source) == url


def test_source_url_of_a_zip_on_disk_is_its_file_uri(tmp_path):
    zip_path = tmp_path / "some dir" / "b.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(b"PK")
    uri = source_url(str(zip_path))
    assert uri == zip_path.resolve().as_uri()
    assert uri.startswith("file:///") and "some%20dir" in uri
    assert source_url("some dir/b.zip") == uri  # relative to the working folder (tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("github:owner/repo/file.zip", "github:OWNER/REPO/TAG/FILE.zip"),
        ("github:owner/repo/tag/sub/file.zip", "github:OWNER/REPO/TAG/FILE.zip"),
        ("github:owner//tag/file.zip", "github:OWNER/REPO/TAG/FILE.zip"),
        ("hf:owner/file.zip", r"hf:OWNER/REPO\[@REVISION\]/FILE.zip"),
        ("hf:owner/repo@/file.zip", r"hf:OWNER/REPO\[@REVISION\]/FILE.zip"),
        ("hf:owner/repo/", r"hf:OWNER/REPO\[@REVISION\]/FILE.zip"),
        ("ftp://example.org/b.zip", "is not a URL"),
        ("no_such_file.zip", "is not a URL"),
        ("", "is not a URL"),
    ],
)
def test_bad_source_forms_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        source_url(source)


def test_environment_names_the_index_and_the_cache(env):
    assert index_file() == env.index
    assert cache_dir() == env.cache


# the index


def test_read_index(tmp_path):
    path = tmp_path / "idx.json"
    assert read_index(path) == {}  # no index yet
    entries = {"a_v0.1.0": {"source": "https://x/a.zip", "checksum": SHA}}
    path.write_text(json.dumps(entries))
    assert read_index(path) == entries


@pytest.mark.parametrize(
    "entry",
    [
        {"source": "https://x/a.zip", "checksum": "abc"},
        {"source": "https://x/a.zip", "checksum": SHA.upper()},
        {"source": "https://x/a.zip", "checksum": SHA + "0"},
        {"source": "https://x/a.zip"},
        {"checksum": SHA},
        "https://x/a.zip",
    ],
    ids=["short", "uppercase", "long", "no-checksum", "no-source", "not-a-dict"],
)
def test_read_index_rejects_an_entry_without_source_and_sha256(tmp_path, entry):
    path = tmp_path / "idx.json"
    path.write_text(json.dumps({"good_v1.0.0": {"source": "s", "checksum": SHA}, "a_v0.1.0": entry}))
    with pytest.raises(ValueError, match="entry 'a_v0.1.0' needs a 'source' and a 64-hex-digit 'checksum'"):
        read_index(path)


def test_read_index_rejects_invalid_json(tmp_path):
    path = tmp_path / "idx.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        read_index(path)


def _entry(n: int) -> dict:
    return {"source": f"https://x/{n}.zip", "checksum": f"{n:064x}"}


def test_lookup_picks_the_highest_version():
    index = {
        "seg_v0.1.9": _entry(1),
        "seg_v0.1.10": _entry(2),  # numerically above 0.1.9, not alphabetically
        "seg_v0.0.99": _entry(3),
        "other_v9.0.0": _entry(4),
    }
    assert lookup("seg", index) == ("seg_v0.1.10", _entry(2))
    index["seg_v1.0.0"] = _entry(5)
    assert lookup("seg", index) == ("seg_v1.0.0", _entry(5))
    assert lookup("seg_v0.1.9", index) == ("seg_v0.1.9", _entry(1))  # a key picks that version
    assert lookup("other", index) == ("other_v9.0.0", _entry(4))
    assert lookup("missing", index) is None
    assert lookup("seg_v2.0.0", index) is None


def test_lookup_reads_the_index_of_the_environment(env):
    env.index.write_text(json.dumps({"seg_v0.1.0": _entry(1)}))
    assert lookup("seg") == ("seg_v0.1.0", _entry(1))


@pytest.mark.parametrize("with_own", [False, True], ids=["alone", "beside-own"])
def test_lookup_does_not_take_another_bundle_for_a_version(with_own):
    index = {"seg_vessels_v2.0.0": _entry(1)}
    if with_own:
        index["seg_v1.0.0"] = _entry(2)
    assert lookup("seg", index) == (("seg_v1.0.0", _entry(2)) if with_own else None)


@pytest.mark.parametrize(
    ("version", "following"), [("0.1.0", "0.1.1"), ("1.2.9", "1.2.10"), ("0.0.0", "0.0.1")]
)
def test_next_version(version, following):
    assert next_version(version) == following


@pytest.mark.parametrize("version", ["1.0", "1.0.0-rc1", "v1.0.0", ""])
def test_next_version_needs_major_minor_patch(version):
    with pytest.raises(ValueError, match="is not MAJOR.MINOR.PATCH"):
        next_version(version)


# publishing


def test_publish_writes_the_entry_and_refuses_a_conflict(exported, tmp_path):
    index = tmp_path / "published.json"
    key, entry = publish_bundle(exported.zip, "github:owner/repo/v1/brain.zip", index=index)
    assert key == f"{NAME}_v{exported.version}"
    assert entry == {
        "source": "https://github.com/owner/repo/releases/download/v1/brain.zip",
        "checksum": exported.sha,
    }
    assert read_index(index) == {key: entry}
    # publishing the same again changes nothing
    assert publish_bundle(exported.zip, "github:owner/repo/v1/brain.zip", index=index) == (key, entry)
    # another source (or another zip) for the same version is a conflict
    with pytest.raises(ValueError, match=f"{key} is already published with another source or checksum; bump"):
        publish_bundle(exported.zip, "hf:owner/repo/brain.zip", index=index)
    assert read_index(index) == {key: entry}
    # other entries are kept
    index.write_text(json.dumps({"other_v1.0.0": _entry(7), key: entry}))
    publish_bundle(exported.zip, "github:owner/repo/v1/brain.zip", index=index)
    assert read_index(index) == {"other_v1.0.0": _entry(7), key: entry}


def test_publish_refuses_a_zip_that_was_not_exported(exported, tmp_path):
    unexported = tmp_path / "unexported.zip"
    with zipfile.ZipFile(exported.zip) as src, zipfile.ZipFile(unexported, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == f"{NAME}/configs/metadata.json":
                meta = json.loads(data)
                del meta["files_sha256"]
                data = json.dumps(meta).encode()
            z.writestr(info, data)
    with pytest.raises(ValueError, match="was not exported"):
        publish_bundle(unexported, "github:owner/repo/v1/brain.zip", index=tmp_path / "idx.json")
    assert not (tmp_path / "idx.json").exists()


def test_download_by_name_through_the_index_then_from_the_cache(exported, env):
    key, entry = publish_bundle(exported.zip, str(exported.zip), index=env.index)
    assert entry["source"] == exported.zip.resolve().as_uri()

    logs: list[str] = []
    got = download_bundle(NAME, log=logs.append)
    assert got == env.cache / exported.sha[:16] / NAME
    assert json.loads((got / SOURCE_FILE).read_text()) == {
        "source": entry["source"],
        "sha256": exported.sha,
        "trusted": False,
    }
    assert (got / "models" / "model.safetensors").read_bytes() == (
        exported.root / "models" / "model.safetensors"
    ).read_bytes()
    assert any(f"{entry['source']} -> {got}" in m for m in logs)
    assert not any("using the copy" in m for m in logs)

    logs.clear()
    assert download_bundle(NAME, log=logs.append) == got
    assert any(f"using the copy of {entry['source']} in {got}" in m for m in logs)
    assert download_bundle(key, log=logs.append) == got  # by key too
    assert download_bundle(NAME, sha256=exported.sha.upper(), log=quiet) == got  # the same sha256
    assert sorted(p.name for p in (env.cache / exported.sha[:16]).iterdir()) == [NAME]
    assert sorted((env.cache / "downloads").iterdir()) == []


def test_download_by_name_with_another_sha256_is_refused(exported, env):
    key, _ = publish_bundle(exported.zip, str(exported.zip), index=env.index)
    with pytest.raises(ValueError, match=f"sha256: {SHA} is not the index's checksum for {key}"):
        download_bundle(NAME, sha256=SHA, log=quiet)
    assert not env.cache.exists()


def test_index_entry_whose_zip_changed_is_refused(exported, env, tmp_path):
    """The index pins the checksum: a zip replaced at its source after publishing is not extracted."""
    served = tmp_path / "served.zip"
    served.write_bytes(exported.zip.read_bytes())
    publish_bundle(served, str(served), index=env.index)
    with open(served, "ab") as f:
        f.write(b"\0")
    with pytest.raises(
        ValueError, match=f"expected {exported.sha}; the file was deleted and nothing was extracted"
    ):
        download_bundle(NAME, log=quiet)
    assert sorted((env.cache / "downloads").iterdir()) == []
    assert not (env.cache / exported.sha[:16]).exists()


def test_unknown_name_is_not_a_source(env):
    with pytest.raises(ValueError, match="is not a URL .* or a published bundle"):
        download_bundle("no_such_bundle", log=quiet)


# shape of a bundle zip


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.write(__file__, name)  # ZipFile.write: a regular file's mode, like `zip` and shutil
    return path


def test_check_archive_returns_the_bundle_name(exported):
    assert check_archive(exported.zip) == NAME


def test_check_archive_refuses_a_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_text("not a zip\n")
    with pytest.raises(ValueError, match="not a zip file"):
        check_archive(path)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (
            ["a/configs/metadata.json", "b/configs/metadata.json"],
            r"one top-level folder expected, found \['a', 'b'\]",
        ),
        (
            ["a/configs/metadata.json", "README.md"],
            r"one top-level folder expected, found \['README.md', 'a'\]",
        ),
        (["-a/configs/metadata.json"], r"one top-level folder expected, found \['-a'\]"),
        (["a/configs/inference.json"], r"no a/configs/metadata.json"),
        ([], r"one top-level folder expected, found \[\]"),
    ],
    ids=["two-folders", "top-level-file", "bad-name", "no-metadata", "empty"],
)
def test_check_archive_refuses_a_zip_that_is_not_one_bundle(tmp_path, names, message):
    with pytest.raises(ValueError, match=f"not a bundle zip \\({message}"):
        check_archive(_zip(tmp_path / "b.zip", names))


def test_check_archive_accepts_folder_members_and_dos_zips(tmp_path):
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as z:
        folder = zipfile.ZipInfo("a/")
        folder.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
        z.writestr(folder, b"")
        info = zipfile.ZipInfo("a/configs/metadata.json")
        info.create_system, info.external_attr = 0, 0x20  # written on Windows: no Unix mode
        z.writestr(info, b"{}")
    assert check_archive(path) == "a"


def test_check_archive_accepts_a_zip_written_with_writestr(tmp_path):
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/configs/metadata.json", b"{}")
    assert check_archive(path) == "a"


def test_package_is_reproducible(exported, tmp_path):
    again, sha = package_bundle(exported.root, tmp_path / "again.zip")
    assert sha == exported.sha == hashlib.sha256(again.read_bytes()).hexdigest()
    assert (tmp_path / "again.zip.sha256").read_text() == f"{sha}  again.zip\n"
    names = zipfile.ZipFile(again).namelist()
    assert all(n.startswith(f"{NAME}/") for n in names)
    assert f"{NAME}/models/model.safetensors" in names and not any(n.endswith(".pt") for n in names)
    renamed, _ = package_bundle(exported.root, tmp_path / "renamed.zip", name="my-bundle")
    assert check_archive(renamed) == "my-bundle"
    with pytest.raises(ValueError, match="is not a bundle name"):
        package_bundle(exported.root, tmp_path / "bad.zip", name="../evil")


class _RangeServer:
    """An HTTP server on 127.0.0.1 serving one file's bytes, with or without range requests; it
    records the Range header of every request."""

    def __init__(self, data: bytes, ranges: bool) -> None:
        import http.server
        import threading

        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                asked = self.headers.get("Range")
                outer.ranges.append(asked)
                start = int(asked.split("=")[1].rstrip("-")) if asked and ranges else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bundle.zip"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("ranges", [True, False])
def test_cut_off_download_resumes(exported, env, tmp_path, ranges):
    """A download cut off half-way (its partial file is kept, named by the sha256) goes on from where
    it stopped with a range request, or starts again where the server ignores ranges."""
    data = exported.zip.read_bytes()
    part = env.cache / "downloads" / f"{exported.sha}.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    server = _RangeServer(data, ranges)
    try:
        got = download_bundle(server.url, sha256=exported.sha, dir=tmp_path / "dl", log=quiet)
    finally:
        server.close()
    assert server.ranges == [f"bytes={len(data) // 2}-"]
    assert (got / "configs" / "metadata.json").is_file() and not part.exists()


def test_a_download_cut_off_is_kept_for_the_next_try(exported, env, tmp_path):
    """The connection drops mid-file: the error says to run again, the partial file stays, and the next
    run completes it."""
    import http.server
    import threading

    data = exported.zip.read_bytes()

    class Dropping(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])  # then the connection closes

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dropping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/bundle.zip"
    try:
        with pytest.raises(ValueError, match="run the same command again to resume"):
            download_bundle(url, sha256=exported.sha, dir=tmp_path / "dl", log=quiet)
    finally:
        server.shutdown()
        server.server_close()
    part = env.cache / "downloads" / f"{exported.sha}.zip.part"
    assert part.stat().st_size == len(data) // 3 and not (tmp_path / "dl").exists()
    resumed = _RangeServer(data, ranges=True)
    try:
        got = download_bundle(resumed.url, sha256=exported.sha, dir=tmp_path / "dl", log=quiet)
    finally:
        resumed.close()
    assert resumed.ranges == [f"bytes={len(data) // 3}-"] and got.is_dir() and not part.exists()
