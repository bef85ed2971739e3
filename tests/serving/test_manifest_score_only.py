"""The manifest's ``signature.score_only``, as the Python server parses it (cc/manifest.cc has the same rule):
a name, absent or null for none, anything else a load error naming the field."""

from __future__ import annotations

import pytest

from tests.fixtures.servable import manifest_dict, write_manifest
from tfad.serving.contract import ManifestError, load_manifest


def _version(tmp_path, score_only):
    version = tmp_path / "fixture" / "1"
    version.mkdir(parents=True)
    manifest = manifest_dict("fixture", 1, {"R0": 0.5})
    manifest["signature"]["score_only"] = score_only
    write_manifest(version, manifest)
    return version


def test_a_name_is_the_score_only_signature(tmp_path) -> None:
    assert load_manifest(_version(tmp_path, "score_only")).score_only_signature == "score_only"


def test_absent_or_null_means_none(tmp_path) -> None:
    assert load_manifest(_version(tmp_path, None)).score_only_signature == ""
    version = tmp_path / "older" / "1"
    version.mkdir(parents=True)
    write_manifest(version, manifest_dict("older", 1, {"R0": 0.5}, score_only=None))
    assert load_manifest(version).score_only_signature == ""


@pytest.mark.parametrize("value", [False, 0, 1, [], {}, ["score_only"]], ids=repr)
def test_anything_but_a_name_is_a_load_error(tmp_path, value) -> None:
    with pytest.raises(ManifestError, match="signature.score_only"):
        load_manifest(_version(tmp_path, value))
