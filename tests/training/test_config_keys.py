"""Every config key, found from the dataclasses, with invalid values: ``tfad fit`` stops with exit code 2 and
one line on stderr naming the dotted key, before anything is written (issue 14, item 3).

The keys are walked programmatically, so a key added later is covered without editing this file: every
field of :class:`tfad.schema.Config` and its sections, every architecture knob of every family's presets
(``model.overrides.<knob>``) and every blob-analysis parameter (``blob.parameters.<name>``). The invalid
values come from the key's type (a wrong type; NaN and infinity for numbers; a negative number; an empty
string), from its declared :class:`tfad.schema.Rule` (the boundaries of its range, an unknown choice, an
even size, a missing or wrong kind of path) and from :data:`EXTRA_INVALID` for the keys whose valid set is
not the schema's (the registry, the presets, the class list). A key that has no invalid value beyond its
type must be in :data:`NO_RANGE` with the reason.

No training happens: every case is rejected while the config is checked, and the data folder is empty, so
a value that is wrongly accepted fails at reading the data (with a message not naming the key) instead of
training.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tfad import schema
from tfad.cli import main
from tfad.config import from_dict
from tfad.families import REGISTRY
from tfad.families.blob.parameters import BlobParameters


@dataclass(frozen=True)
class Key:
    """One config key to walk: its dotted path, the family it is tried under, its type and its rule."""

    path: str  # dotted, as the error message must name it
    family: str | None  # model.family of the case (None: the default family)
    annotation: Any
    rule: Any = None  # a tfad.schema.Rule, when the schema declares one
    section: bool = False  # a dataclass-typed key (a section): its own keys are walked too

    @property
    def id(self) -> str:
        return self.path if self.family is None else f"{self.path}@{self.family}"


#: Keys whose valid set is not declared in the schema (the family registry, a family's presets, the class
#: list, a family's own loss names): invalid values stated here.
EXTRA_INVALID: dict[str, list[Any]] = {
    "name": ["my model!", "../escape"],
    "model.family": ["no-such-family"],
    "model.preset": ["no-such-preset"],
    "model.overrides": [{"no_such_knob": 1}],
    "blob.parameters": [{"no_such_parameter": 1}],
    "supervised.classes": [[], ["good"], ["defect", "good"], ["good", "crack", "crack"]],
    "grdnet.roi_loss": ["no-such-variant"],
}

#: Keys without an invalid value beyond a wrong type, and why.
NO_RANGE: dict[str, str] = {
    "augment.vertical_flip": "a switch: true and false are both valid",
    "supersimplenet.cache_features": "a switch: true and false are both valid",
    "model.overrides.train_encoder": "a switch (AE-XAD's encoder frozen or trained): both are valid",
}

#: dict-typed keys and the keys inside them that are walked (a new dict key needs an entry here).
SUB_SCHEMAS = ("model.overrides", "blob.parameters")


def _base_type(annotation: Any) -> Any:
    """``X`` of ``X | None``; the annotation itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def _walk(cls: type, prefix: str = "", family: str | None = None) -> list[Key]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        path, annotation = f"{prefix}{f.name}", hints[f.name]
        section = dataclasses.is_dataclass(annotation)
        keys.append(Key(path, family, annotation, f.metadata.get("rule"), section))
        if section:
            keys.extend(_walk(annotation, path + ".", family))
    return keys


def all_keys() -> list[Key]:
    """Every config key: the schema's, every family's architecture knobs, the blob parameters."""
    keys = _walk(schema.Config)
    for entry in REGISTRY:
        arch = type(entry.presets()[entry.default_preset])
        keys.extend(_walk(arch, "model.overrides.", entry.name))
    keys.extend(_walk(BlobParameters, "blob.parameters.", "blob"))
    return keys


KEYS = all_keys()


@dataclass
class Workspace:
    """The folders of the cases: the config file, an empty data set, the output and working directories,
    and paths of each wrong kind (missing, a file, an empty folder, a folder without images)."""

    root: Path

    def __post_init__(self) -> None:
        for name in ("data", "out", "cwd", "empty", "no_images"):
            (self.root / name).mkdir()
        (self.root / "no_images" / "notes.txt").write_text("not an image\n")
        (self.root / "a_file.txt").write_text("not a folder\n")

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def base(self, family: str | None) -> dict[str, Any]:
        """A valid config (but for its empty data set) of ``family``."""
        data: dict[str, Any] = {
            "name": "walk",
            "output_dir": str(self.root / "out"),
            "data": {"root": str(self.root / "data")},
        }
        if family is not None:
            data["model"] = {"family": family}
        return data


def invalid_values(key: Key, ws: Workspace) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """(wrong types, out-of-range values) of ``key``, each with what it tries."""
    base = _base_type(key.annotation)
    origin = typing.get_origin(base)
    wrong: list[tuple[Any, str]] = []
    bad: list[tuple[Any, str]] = []
    if key.section:
        return [(5, "a number for a section")], []
    if base is bool:
        wrong.append(("maybe", "a string for true/false"))
    elif base is int:
        wrong += [("seven", "a string for an integer"), (2.5, "a fraction for an integer")]
        bad.append((-1, "negative"))
    elif base is float:
        wrong += [("seven", "a string for a number"), (math.nan, "NaN"), (math.inf, "infinity")]
        bad.append((-1.5, "negative"))
    elif base is str:
        wrong.append((7, "a number for a string"))
        bad.append(("", "empty"))
        if key.path.startswith(SUB_SCHEMAS):  # architecture and blob knobs: every string one is a choice
            bad.append(("no-such-choice", "an unknown choice"))
    elif origin is list:
        wrong += [("good", "a string for a list"), ([1, 2], "numbers for names")]
    elif origin is dict:
        wrong.append(("knob", "a string for a mapping"))
    rule = key.rule
    if rule is not None:
        integer = base is int
        step = 1 if integer else 0.5
        if rule.ge is not None:
            bad.append((rule.ge - step, f"below the minimum {rule.ge}"))
        if rule.gt is not None:
            bad.append((rule.gt, f"at the excluded minimum {rule.gt}"))
        if rule.le is not None:
            bad.append((rule.le + step, f"above the maximum {rule.le}"))
        if rule.lt is not None:
            bad.append((rule.lt, f"at the excluded maximum {rule.lt}"))
        if rule.choices:
            if all(isinstance(c, str) for c in rule.choices):
                bad.append(("no-such-choice", "an unknown choice"))
            else:
                bad.append((max(rule.choices) + 1, "not one of the choices"))
        if rule.odd:
            bad.append((2 * max(1, math.ceil((rule.ge or 1) / 2)), "even"))
        if rule.path is not None:
            bad.append((str(ws.root / "missing"), "a missing path"))
            if rule.path == "file":
                bad.append((str(ws.root / "empty"), "a folder for a file"))
            else:
                bad.append((str(ws.root / "a_file.txt"), "a file for a folder"))
            if rule.path == "image-dir":
                bad.append((str(ws.root / "empty"), "an empty folder"))
                bad.append((str(ws.root / "no_images"), "a folder without images"))
    bad += [(value, "stated invalid") for value in EXTRA_INVALID.get(key.path, [])]
    unique = {repr(value): (value, why) for value, why in bad}  # e.g. -1 is both "negative" and "< 0"
    return wrong, list(unique.values())


def _set(data: dict, path: str, value: Any) -> None:
    *sections, last = path.split(".")
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[last] = value


def _leftovers(ws: Workspace) -> list[str]:
    """Whatever a case left in the output or the working directory (removed, so cases stay independent)."""
    found = []
    for folder in (ws.root / "out", ws.root / "cwd"):
        for item in sorted(folder.iterdir()):
            found.append(str(item.relative_to(ws.root)))
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    return found


def run_case(
    key: Key, value: Any, ws: Workspace, capsys: pytest.CaptureFixture, also: dict[str, Any] | None = None
) -> str | None:
    """What is wrong with how ``tfad fit`` handles ``key: value`` (None: exit 2, one line naming the key,
    nothing written); ``also``: other keys set (dotted path: value), for values invalid only together."""
    data = ws.base(key.family)
    for path, other in (also or {}).items():
        _set(data, path, other)
    _set(data, key.path, value)
    ws.config.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    code = main(["fit", str(ws.config), "--no-progress"])
    err = capsys.readouterr().err.strip()
    problems = []
    if code != 2:
        problems.append(f"exit code {code}")
    if "\n" in err or not err:
        problems.append(f"not one line on stderr: {err!r}")
    elif key.path not in err:
        problems.append(f"the message does not name {key.path}: {err!r}")
    left = _leftovers(ws)
    if left:
        problems.append(f"left behind {left}")
    return "; ".join(problems) or None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The folders shared by every case (each case leaves them as it found them)."""
    return Workspace(tmp_path_factory.mktemp("walk"))


def test_the_base_configs_are_valid(workspace: Workspace) -> None:
    # Each case changes one key of these: they must pass every check but reading the (empty) data.
    for family in [None, *(entry.name for entry in REGISTRY)]:
        schema.check_paths(from_dict(workspace.base(family)))


def test_every_key_has_an_invalid_value_or_a_reason(workspace: Workspace) -> None:
    paths = {key.path for key in KEYS}
    assert set(EXTRA_INVALID) <= paths and set(NO_RANGE) <= paths, "a stated key does not exist"
    missing = [
        key.id
        for key in KEYS
        if not key.section and not invalid_values(key, workspace)[1] and key.path not in NO_RANGE
    ]
    assert not missing, f"keys without an out-of-range value: declare a schema.Rule, or list them: {missing}"
    dicts = {key.path for key in KEYS if typing.get_origin(_base_type(key.annotation)) is dict}
    assert dicts == set(SUB_SCHEMAS), "a new dict-typed key: walk its keys (SUB_SCHEMAS and all_keys)"


@pytest.mark.parametrize("key", KEYS, ids=[key.id for key in KEYS])
def test_invalid_value_stops_fit_before_anything_is_written(
    key: Key, workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace.root / "cwd")  # a relative run directory would land here
    wrong, bad = invalid_values(key, workspace)
    failures = []
    for value, why in wrong + bad:
        problem = run_case(key, value, workspace, capsys)
        if problem:
            failures.append(f"{key.path}: {value!r} ({why}): {problem}")
    assert not failures, "\n".join(failures)


def test_a_bad_set_value_is_one_line_and_exit_2(workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    workspace.config.write_text(yaml.safe_dump(workspace.base(None)))
    capsys.readouterr()
    assert main(["fit", str(workspace.config), "--set", "model.overrides={widening:"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--set model.overrides" in err and "\n" not in err
    assert not _leftovers(workspace)


def test_entries_are_blamed_only_when_they_are_the_problem() -> None:
    # The overrides are what makes line-cpu take 32x32 input: valid, and not blamed on data.image_size.
    tiny = {"stem_stride": 2, "stages": 2, "base_width": 8, "stem_filters": 8, "latent_dim": 16,
            "critic_base_width": 8, "critic_stages": 2}  # fmt: skip
    from_dict({"data": {"image_size": 32}, "model": {"overrides": tiny}})
    with pytest.raises(schema.ConfigError, match=r"^model.overrides.widening: .*positive"):
        from_dict({"data": {"image_size": 32}, "model": {"overrides": {**tiny, "widening": 0}}})
    with pytest.raises(schema.ConfigError, match=r"^data.image_size 96 .*model.preset 'line-cpu'"):
        from_dict({"data": {"image_size": 96}})
    # Two entries in conflict: both are named.
    with pytest.raises(schema.ConfigError, match=r"^model.overrides.stem_stride / model.overrides.stages: "):
        # 128 takes stem_stride 8 (with 4 stages) and 5 stages (with stem_stride 4), not both: 8 * 2**5
        from_dict({"data": {"image_size": 128}, "model": {"overrides": {"stem_stride": 8, "stages": 5}}})
    # blob parameters valid together only (max_area >= min_area), whatever the family
    from_dict({"blob": {"parameters": {"min_area": 3, "max_area": 5}}})
    with pytest.raises(schema.ConfigError, match=r"^blob.parameters.min_area / blob.parameters.max_area: "):
        from_dict({"blob": {"parameters": {"min_area": 50, "max_area": 20}}})


def test_a_combination_invalid_only_together_stops_fit(
    workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # grdnet.patch_score ssim scores the whole patch, so it cannot honour an inference ROI: each value is
    # valid alone (with map-max the ROI passes every check and fit fails only at the empty data set).
    monkeypatch.chdir(workspace.root / "cwd")
    key = Key("grdnet.patch_score", "grdnet", str)
    roi = {"grdnet.inference_roi": str(workspace.root / "a_file.txt")}
    assert run_case(key, "ssim", workspace, capsys, also=roi) is None
    assert "does not name grdnet.patch_score" in (run_case(key, "map-max", workspace, capsys, also=roi) or "")
    assert "does not name grdnet.patch_score" in (run_case(key, "ssim", workspace, capsys) or "")


def test_the_autoencoder_keys_are_walked() -> None:
    # issue 16 item 1: the autoencoder section and the family's architecture knobs are among the cases
    ids = {key.id for key in KEYS}
    section = {"autoencoder.variant", "autoencoder.mse_weight", "autoencoder.ssim_weight",
               "autoencoder.corrupted_weight", "autoencoder.score_alpha"}  # fmt: skip
    knobs = {f"model.overrides.{k}@autoencoder" for k in ("bottleneck", "latent_dim", "kernel_size")}
    assert section | knobs <= ids, sorted((section | knobs) - ids)


def test_autoencoder_loss_weights_both_zero_stop_fit(
    workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each weight may be 0 alone (MSE only, or SSIM only); both 0 leave the plain variant no loss. The check
    # runs whatever the family trained (a bad value in an unused section is an error too).
    monkeypatch.chdir(workspace.root / "cwd")
    for family in ("autoencoder", None):
        key = Key("autoencoder.mse_weight", family, float)
        assert run_case(key, 0.0, workspace, capsys, also={"autoencoder.ssim_weight": 0.0}) is None
        # valid alone: fit gets past the config and fails at the empty data set, with another message
        assert "does not name autoencoder.mse_weight" in (run_case(key, 0.0, workspace, capsys) or "")
    key = Key("autoencoder.ssim_weight", None, float)
    assert run_case(key, 0.0, workspace, capsys, also={"autoencoder.mse_weight": 0.0}) is None
