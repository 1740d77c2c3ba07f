"""Bundle checks, export, packaging, publishing and download (``brainbundles verify / export /
package / publish / download``)."""

from brainbundles.bundle.download import download_bundle, publish_bundle, read_index, source_url
from brainbundles.bundle.export import export_bundle, training_fingerprint
from brainbundles.bundle.package import check_archive, extract_archive, package_bundle
from brainbundles.bundle.program import load_exported
from brainbundles.bundle.verify import verify_bundle
from brainbundles.bundle.weights import find_weights, load_weights, save_weights

__all__ = [
    "download_bundle",
    "publish_bundle",
    "read_index",
    "source_url",
    "export_bundle",
    "load_exported",
    "training_fingerprint",
    "check_archive",
    "extract_archive",
    "package_bundle",
    "verify_bundle",
    "find_weights",
    "load_weights",
    "save_weights",
]
