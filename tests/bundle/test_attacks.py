"""Attacks on the bundle sharing path (download, extract, verify, load weights): each one is refused with
a message that says why, and leaves nothing behind: no bundle folder, no ``.extract-*`` folder, no
partial download, and the payload never runs (its marker file is never created).

The bundle is a real exported bundle (tiny network, random weights, no training), built once per module.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import shutil
import stat
import threading
import types
import zipfile
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from brainbundles.bundle.configs import build_network
from brainbundles.bundle.download import SOURCE_FILE, download_bundle
from brainbundles.bundle.export import export_bundle, file_checksums
from brainbundles.bundle.package import check_archive, package_bundle
from brainbundles.bundle.verify import verify_bundle, verify_checksums
from brainbundles.bundle.weights import load_weights, save_weights
from brainbundles.errors import UnsafeFileError
from brainbundles.handlers import LoadWeights
from brainbundles.workflows import find_bundle

NAME = "brain_tissue_mri_segmentation"


def quiet(*_args) -> None:
    """A ``log`` that drops the download and verification lines."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Payload:
    """A pickle that runs code when it is loaded: ``exec`` creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def evil_pickle(path: Path, marker: Path) -> Path:
    """A ``torch.save``d "state dict" whose value runs code on an unsafe load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"encoders.0.conv.weight": Payload(marker)}, path)
    return path


def zip_folder(root: Path, out: Path, name: str = NAME, extra=()) -> tuple[Path, str]:
    """Zip every file under ``root`` (pickles included, unlike ``package_bundle``) as ``name/...``,
    then the ``extra`` members, ``(ZipInfo or name, bytes)``; returns the zip and its sha256."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, f"{name}/{p.relative_to(root).as_posix()}")
        for info, data in extra:
            z.writestr(info, data)
    return out, sha256(out)


def rezip(good: Path, out: Path, extra) -> tuple[Path, str]:
    """The members of ``good``, then the ``extra`` members; returns the zip and its sha256."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            z.writestr(info, src.read(info))
        for info, data in extra:
            z.writestr(info, data)
    return out, sha256(out)


def relist(root: Path, extra: dict[str, str] | None = None) -> None:
    """Rewrite the metadata's ``files_sha256`` to match the files now in ``root`` (an attacker's
    re-export), plus ``extra`` entries (``{"models/model.pt": sha}``: export lists no pickles)."""
    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["files_sha256"] = {**file_checksums(root), **(extra or {})}
    meta_path.write_text(json.dumps(meta, indent=4))


def assert_nothing_left(target: Path, cache: Path, *markers: Path) -> None:
    """No bundle folder and no ``.extract-*`` folder in ``target``, no partial download in the cache,
    no payload marker."""
    if target.exists():
        assert sorted(p.name for p in target.iterdir()) == []
    downloads = cache / "downloads"
    if downloads.exists():
        assert sorted(p.name for p in downloads.iterdir()) == []
    for marker in markers:
        assert not marker.exists(), f"{marker}: the payload ran"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, untrained_export) -> types.SimpleNamespace:
    """An exported bundle (random weights) and its package: ``root``, ``zip``, ``sha``."""
    tmp = tmp_path_factory.mktemp("exported")
    root = untrained_export(tmp / NAME)
    zip_path, sha = package_bundle(root, tmp / "good.zip")
    return types.SimpleNamespace(root=root, zip=zip_path, sha=sha)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Nothing touches ~/.cache or the repository's index."""
    monkeypatch.setenv("BRAINBUNDLES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINBUNDLES_INDEX", str(tmp_path / "index.json"))
    return tmp_path / "cache"


@pytest.fixture()
def target(tmp_path) -> Path:
    return tmp_path / "target"


@pytest.fixture()
def bundle(exported, tmp_path) -> Path:
    """A copy of the exported bundle that a test may change."""
    return Path(shutil.copytree(exported.root, tmp_path / "src" / NAME))


@pytest.fixture()
def server(exported):
    """A plain HTTP server on 127.0.0.1 serving the good zip's folder; yields (base URL, requests)."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(exported.zip.parent))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", requests
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_the_good_zip_downloads_and_verifies(exported, target, cache):
    """The baseline the attacks are made from: the untouched package is accepted."""
    got = download_bundle(str(exported.zip), sha256=exported.sha, dir=target, log=quiet)
    assert got == target / NAME
    assert json.loads((got / SOURCE_FILE).read_text())["sha256"] == exported.sha
    assert sorted(p.name for p in target.iterdir()) == [NAME]
    assert sorted((cache / "downloads").iterdir()) == []


# 1. checksum mismatch


@pytest.mark.parametrize("how", ["path", "http"])
def test_wrong_sha256_is_refused_before_extracting(exported, target, cache, server, how):
    base, requests = server
    source = str(exported.zip) if how == "path" else f"{base}/{exported.zip.name}"
    wrong = "0" * 64
    with pytest.raises(
        ValueError, match=f"sha256 is {exported.sha}, expected {wrong}.*nothing was extracted"
    ):
        download_bundle(source, sha256=wrong, dir=target, log=quiet)
    assert not target.exists()  # the folder is made only after the checksum matched
    assert_nothing_left(target, cache)
    assert requests == ([] if how == "path" else [f"/{exported.zip.name}"])


def test_malformed_sha256_is_refused(exported, target, cache):
    with pytest.raises(ValueError, match="sha256: expected 64 hex digits"):
        download_bundle(str(exported.zip), sha256="abc", dir=target, log=quiet)
    assert not target.exists() and not (cache / "downloads").exists()


# 2. and 3. members that would land outside the folder, links and other odd members


def _member(name: str, kind: int = stat.S_IFLNK) -> zipfile.ZipInfo:
    """A zip member of a given file type (its Unix mode in the high bits of ``external_attr``)."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.txt", r"'\.\./evil\.txt' would land outside the target folder \('\.\.'\)"),
        (f"{NAME}/../../../evil.txt", "would land outside the target folder"),
        (f"{NAME}/configs/../../../evil.txt", "would land outside the target folder"),
        ("{tmp}/evil.txt", "has an absolute path"),
        ("/tmp/evil.txt", "has an absolute path"),
        (f"{NAME}\\..\\..\\..\\evil.txt", "has an absolute path"),
        ("C:/evil.txt", "has an absolute path"),
    ],
    ids=[
        "dotdot",
        "dotdot-inside",
        "dotdot-deep",
        "absolute-tmp_path",
        "absolute-/tmp",
        "backslash",
        "drive",
    ],
)
def test_member_escaping_the_folder_is_refused(exported, tmp_path, target, cache, member, message):
    member = member.format(tmp=tmp_path)
    info = zipfile.ZipInfo(member)  # ZipInfo keeps the name as given ('..', leading '/')
    crafted, sha = rezip(exported.zip, tmp_path / "crafted.zip", [(info, b"escaped\n")])
    with pytest.raises(UnsafeFileError, match=f"refused, nothing extracted: member .*{message}"):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache)
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p for p in tmp_path.rglob("evil.txt")) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([(_member(f"{NAME}/models/model.safetensors.link"), b"/etc/passwd")], "is a symbolic link"),
        ([(_member(f"{NAME}/docs/fifo", stat.S_IFIFO), b"")], "is not a regular file"),
        ([(_member(f"{NAME}/docs/dev", stat.S_IFCHR), b"")], "is not a regular file"),
        ([(_member(f"{NAME}/docs/README.md", stat.S_IFREG), b"# a second README\n")], "appears twice"),
    ],
    ids=["symlink", "fifo", "device", "duplicate"],
)
def test_link_or_odd_member_is_refused(exported, tmp_path, target, cache, extra, message):
    with pytest.warns(UserWarning, match="Duplicate name") if "twice" in message else nullcontext():
        crafted, sha = rezip(exported.zip, tmp_path / "crafted.zip", extra)
    with pytest.raises(UnsafeFileError, match=f"refused, nothing extracted: member .*{message}"):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache)
    with pytest.raises(UnsafeFileError, match=message):
        check_archive(crafted)


def _zeros_member(out: Path, good: Path, name: str, size: int) -> tuple[Path, str]:
    """``good`` plus a member ``name`` of ``size`` zero bytes, deflated (about 1000:1), streamed into
    the zip so the test never holds it; returns the zip and its sha256."""
    shutil.copy(good, out)
    with (
        zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as z,
        z.open(name, "w", force_zip64=True) as f,
    ):
        block = bytes(1 << 20)
        for _ in range(size // len(block)):
            f.write(block)
    return out, sha256(out)


def test_zip_of_zeros_is_refused_before_writing(exported, tmp_path, target, cache):
    """A "weights file" of 2 GiB of zeros in a 2 MB zip, downloaded with its correct sha256: refused from
    the zip's directory for its compression ratio, before anything is written."""
    crafted, sha = _zeros_member(tmp_path / "zeros.zip", exported.zip, f"{NAME}/models/model.pt", 2 << 30)
    assert crafted.stat().st_size < 5 << 20
    with pytest.raises(UnsafeFileError, match=r"member .*model\.pt' would unpack .*more than 100:1"):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache)
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file() and p != crafted)
    assert written < 100 << 20


def test_archive_larger_than_a_bundle_is_refused(exported, tmp_path, monkeypatch):
    """Incompressible members whose sum passes the unpacked-size limit (lowered here to keep the
    test small) are refused before extracting; at the limit the same zip is accepted."""
    import os

    from brainbundles.bundle import package

    crafted, _ = rezip(exported.zip, tmp_path / "big.zip", [(f"{NAME}/docs/noise.bin", os.urandom(3 << 20))])
    total = sum(i.file_size for i in zipfile.ZipFile(crafted).infolist())
    monkeypatch.setattr(package, "MAX_UNPACKED_BYTES", total - 1)
    with pytest.raises(UnsafeFileError, match=f"unpack to {total} bytes, more than the {total - 1}"):
        check_archive(crafted)
    monkeypatch.setattr(package, "MAX_UNPACKED_BYTES", total)
    assert check_archive(crafted) == NAME


def test_symlink_member_is_not_created(exported, tmp_path, target, cache):
    """A link pointing at a file outside the bundle (the classic "write through a link" set-up)."""
    link = _member(f"{NAME}/configs/evil")
    through = _member(f"{NAME}/configs/evil/passwd", stat.S_IFREG)
    crafted, sha = rezip(
        exported.zip, tmp_path / "crafted.zip", [(link, str(tmp_path).encode()), (through, b"x")]
    )
    with pytest.raises(
        UnsafeFileError, match="'brain_tissue_mri_segmentation/configs/evil' is a symbolic link"
    ):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache)
    assert not (tmp_path / "passwd").exists()


# 4. pickles that would run code


@pytest.mark.parametrize(
    ("rel", "drop_safetensors", "listed"),
    [
        ("models/model.pt", True, True),  # the bundle's only weights
        ("docs/notes.pkl", False, True),  # a pickle nothing would load, still refused
        ("models/.cache/model.pt", False, False),  # hidden: not checksummed, still checked
    ],
    ids=["model.pt", "docs-pkl", "hidden"],
)
def test_code_running_pickle_is_refused(bundle, tmp_path, target, cache, rel, drop_safetensors, listed):
    marker = tmp_path / "PWNED"
    evil_pickle(bundle / rel, marker)
    if drop_safetensors:
        (bundle / "models" / "model.safetensors").unlink()
    relist(bundle, {rel: sha256(bundle / rel)} if listed else None)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert (rel in meta["files_sha256"]) == listed
    assert ("models/model.safetensors" in meta["files_sha256"]) != drop_safetensors
    crafted, sha = zip_folder(bundle, tmp_path / "crafted.zip")
    assert f"{NAME}/{rel}" in zipfile.ZipFile(crafted).namelist()

    with pytest.raises(
        UnsafeFileError, match=f"{rel}: refused to load: .*it would import .*exec.*nothing in it was run"
    ):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache, marker)


def test_code_running_model_pt_is_refused_by_every_loader(exported, tmp_path):
    marker, control = tmp_path / "PWNED", tmp_path / "CONTROL"
    ckpt = tmp_path / "models"
    path = evil_pickle(ckpt / "model.pt", marker)
    # the payload is live: an unsafe load does run it (a copy with its own marker)
    torch.load(evil_pickle(tmp_path / "control.pt", control), weights_only=False)
    assert control.exists()

    with pytest.raises(UnsafeFileError, match=r"model\.pt: refused to load: .*exec"):
        load_weights(path)
    assert not marker.exists()

    net = build_network(exported.root, weights=False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(UnsafeFileError, match=r"model\.pt: refused to load"):
        LoadWeights(ckpt, net)()
    assert not marker.exists()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())

    # safetensors is preferred: with both, the pickle is never opened
    save_weights(before, ckpt / "model.safetensors")
    LoadWeights(ckpt, net)()
    assert not marker.exists()


def test_plain_tensor_pickle_is_accepted(exported, tmp_path):
    """The other side of the check: a state dict pickle (what training writes) loads."""
    state = build_network(exported.root, weights=False).state_dict()
    torch.save(state, tmp_path / "model.pt")
    loaded = load_weights(tmp_path / "model.pt")
    assert loaded.keys() == state.keys()
    torch.save({"network": state, "epoch": 3}, tmp_path / "last.pt")
    assert load_weights(tmp_path / "last.pt").keys() == state.keys()


# 5. a URL without a checksum


def test_url_without_sha256_is_refused_before_any_request(exported, target, cache, server):
    base, requests = server
    url = f"{base}/{exported.zip.name}"
    with pytest.raises(ValueError, match="no sha256 is known for it, so it was not downloaded.*--trust"):
        download_bundle(url, dir=target, log=quiet)
    with pytest.raises(ValueError, match="no sha256 is known"):
        find_bundle(url)  # what run_inference / run_training call
    with pytest.raises(ValueError, match="no sha256 is known"):
        download_bundle("github:owner/repo/v1/bundle.zip", dir=target, log=quiet)
    with pytest.raises(ValueError, match="no sha256 is known"):
        download_bundle("http://127.0.0.1:9/nothing-listens-here.zip", dir=target, log=quiet)
    assert requests == []
    assert not target.exists() and not (cache / "downloads").exists()


def test_trusted_url_without_sha256_downloads(exported, target, cache, server):
    base, requests = server
    logs: list[str] = []
    got = download_bundle(f"{base}/{exported.zip.name}", dir=target, trust=True, log=logs.append)
    assert got == target / NAME
    assert any(f"sha256 {exported.sha} (trusted without a checksum)" in m for m in logs)
    assert json.loads((got / SOURCE_FILE).read_text())["trusted"] is True
    assert requests == [f"/{exported.zip.name}"]


# 6. configs holding new code


def test_config_with_new_code_is_refused_unless_trusted(bundle, tmp_path, target, cache):
    marker = tmp_path / "PWNED"
    inference = bundle / "configs" / "inference.json"
    config = json.loads(inference.read_text())
    config["evil"] = f"$open({str(marker)!r}, 'w')"
    inference.write_text(json.dumps(config, indent=4))
    export_bundle(bundle, version="9.9.9")  # the attacker re-exports: every checksum matches
    verify_checksums(bundle, strict=True)
    crafted, sha = package_bundle(bundle, tmp_path / "crafted.zip")

    with pytest.raises(
        UnsafeFileError,
        match=r"inference\.json: holds code, or names of code, that brainbundles' own bundles do not .*\$open.*eval.*--trust",
    ):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache, marker)

    got = download_bundle(str(crafted), sha256=sha, dir=tmp_path / "trusted", trust=True, log=quiet)
    assert got == tmp_path / "trusted" / NAME
    assert json.loads((got / SOURCE_FILE).read_text())["trusted"] is True
    assert (cache / "downloads").is_dir() and sorted((cache / "downloads").iterdir()) == []


@pytest.mark.parametrize(
    ("file", "key", "value"),
    [
        ("train.json", "evil_target", {"_target_": "subprocess.Popen", "args": ["true"]}),
        ("inference.json", "evil_macro", "%/etc/passwd"),
        ("metadata.json", "evil_meta", "$__import__('os').system('true')"),
    ],
    ids=["target", "macro", "metadata"],
)
def test_other_config_code_is_refused(bundle, tmp_path, target, cache, file, key, value):
    path = bundle / "configs" / file
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config, indent=4))
    relist(bundle)
    crafted, sha = zip_folder(bundle, tmp_path / "crafted.zip")
    with pytest.raises(
        UnsafeFileError, match=rf"{file}: holds code, or names of code, that brainbundles' own bundles do not"
    ):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache)


# 7. tampering after export


@pytest.mark.parametrize("rel", ["configs/inference.json", "docs/README.md", "models/model.safetensors"])
def test_file_changed_after_export_is_named(bundle, tmp_path, rel):
    with open(bundle / rel, "ab") as f:
        f.write(b"\n")
    message = rf"{rel}: sha256 differs from the metadata's \(the file changed after export\)"
    with pytest.raises(ValueError, match=message):
        verify_checksums(bundle)
    with pytest.raises(ValueError, match=message):
        verify_bundle(bundle, log=quiet)
    with pytest.raises(ValueError, match=message):
        package_bundle(bundle, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_missing_file_is_named(bundle, tmp_path):
    (bundle / "docs" / "README.md").unlink()
    with pytest.raises(ValueError, match=r"docs/README\.md: listed in files_sha256 but missing"):
        verify_bundle(bundle, log=quiet)
    with pytest.raises(ValueError, match="listed in files_sha256 but missing"):
        package_bundle(bundle, tmp_path / "out.zip")


def test_extra_file_fails_strict_verification(bundle, tmp_path, target, cache):
    (bundle / "docs" / "extra.txt").write_text("not in the checksums\n")
    assert verify_checksums(bundle) > 0  # a local bundle may hold more (data, outputs)
    with pytest.raises(
        ValueError, match=r"files not covered by the metadata's checksums: \['docs/extra\.txt'\]"
    ):
        verify_checksums(bundle, strict=True)
    with pytest.raises(ValueError, match="files not covered"):
        verify_bundle(bundle, strict=True, log=quiet)
    crafted, sha = zip_folder(bundle, tmp_path / "crafted.zip")
    with pytest.raises(
        ValueError, match=r"files not covered by the metadata's checksums: \['docs/extra\.txt'\]"
    ):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache)


@pytest.mark.parametrize("rel", ["../../outside.txt", "/etc/hostname"])
def test_checksum_list_naming_a_path_outside_is_refused(bundle, rel):
    meta_path = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["files_sha256"][rel] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="files_sha256 names a path outside the bundle"):
        verify_checksums(bundle)


def test_package_refuses_a_file_added_after_export(bundle, tmp_path):
    (bundle / "docs" / "extra.txt").write_text("not in the checksums\n")
    with pytest.raises(ValueError, match="extra.txt"):
        package_bundle(bundle, tmp_path / "out.zip")


# attacks hidden in the exported program, in config values and in the logging set-up


def _rewrite_pt2(pt2: Path, change) -> None:
    """Rewrite a torch.export archive member by member: ``change(name, data)`` returns the new data,
    ``None`` to drop it; it may also return extra ``(name, data)`` members via ``change.extra``."""
    with zipfile.ZipFile(pt2) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    prefix = members[0][0].filename.split("/")[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in members:
            new = change(info.filename[len(prefix) + 1 :], data)
            if new is not None:
                z.writestr(info, new)
        for name, data in getattr(change, "extra", []):
            z.writestr(f"{prefix}/{name}", data)
    pt2.write_bytes(buf.getvalue())


def _pickled(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(Payload(marker), buf)
    return buf.getvalue()


def _sample_inputs(marker):
    def change(name, data):
        return _pickled(marker) if name == "data/sample_inputs/model.pt" else data

    return change


def _legacy_weights(marker):
    def change(name, data):
        return data

    change.extra = [("data/weights/model.pt", _pickled(marker))]
    return change


def _graph_json(marker):
    def change(name, data):
        if name != "models/model.json":
            return data
        program = json.loads(data)
        tensors = program["graph_module"]["graph"]["tensor_values"]
        first = tensors[next(iter(tensors))]
        expr = f"__import__('pathlib').Path({str(marker)!r}).touch() or {first['sizes'][0]['as_int']}"
        first["sizes"][0] = {"as_expr": {"expr_str": expr, "hint": {"as_int": first["sizes"][0]["as_int"]}}}
        return json.dumps(program).encode()

    return change


@pytest.mark.parametrize("attack", [_sample_inputs, _legacy_weights, _graph_json])
def test_code_in_the_exported_program_is_refused(bundle, tmp_path, target, cache, attack):
    marker = tmp_path / "PWNED"
    _rewrite_pt2(bundle / "models" / "model.pt2", attack(marker))
    relist(bundle)
    crafted, sha = zip_folder(bundle, tmp_path / "crafted.zip")
    try:
        with pytest.raises(UnsafeFileError, match=r"model\.pt2"):
            download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    finally:
        assert not marker.exists(), "the payload ran while the download was verified"
    assert_nothing_left(target, cache)


def test_config_value_that_names_a_callable_is_refused(bundle, tmp_path, target, cache):
    marker = tmp_path / "PWNED"
    common_path = bundle / "configs" / "inference.json"
    common = json.loads(common_path.read_text())
    loader = common["deterministic_transforms"][0]
    assert loader["_target_"] == "LoadImaged"  # a known target: only its values change
    loader["reader"], loader["command"] = "os.system", f"touch {marker}"
    common_path.write_text(json.dumps(common, indent=4))
    relist(bundle)
    crafted, sha = zip_folder(bundle, tmp_path / "crafted.zip")
    with pytest.raises(UnsafeFileError):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache, marker)


EVIL_LOGGING = """\
[loggers]
keys=root

[handlers]
keys=fileHandler

[formatters]
keys=shell

[logger_root]
level=INFO
handlers=fileHandler

[handler_fileHandler]
class=FileHandler
level=INFO
formatter=shell
args=({rc!r}, 'a')

[formatter_shell]
format=touch {marker} # %(message)s
"""


def test_logging_config_writing_outside_the_bundle_is_refused(bundle, tmp_path, target, cache):
    rc = tmp_path / "fake_bashrc"
    (bundle / "configs" / "logging.conf").write_text(
        EVIL_LOGGING.format(rc=str(rc), marker=tmp_path / "PWNED")
    )
    relist(bundle)
    crafted, sha = zip_folder(bundle, tmp_path / "crafted.zip")
    with pytest.raises(UnsafeFileError, match=r"logging\.conf"):
        download_bundle(str(crafted), sha256=sha, dir=target, log=quiet)
    assert_nothing_left(target, cache, rc)
