"""The commented YAML writer, and the probe's catalogue of SOP classes against the shipped scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydicom.uid import UID_dictionary

from dicomconf.probe.probe import (
    SOP_CLASSES,
    TRANSFER_SYNTAXES,
    Finding,
    ProbeResult,
    Section,
    short_name,
)
from dicomconf.probe.writer import render, scalar
from dicomconf.scenario.profile import load_profile
from dicomconf.scu.client import resolve_uid

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", [
    "ANY-SCP", "PACS 1", " LEAD", "yes", "No", "null", "~", "123", "1.2.840.10008.1.2", "a: b", "#x", "x # y",
    "it's", 'say "hi"', "Ünïcode", "", "true", "[x]", "{x}", "*star", "&anchor", "!tag", "-", "- x",
])
def test_scalars_read_back_as_written(value):
    assert yaml.safe_load(f"key: {scalar(value)}  # a comment")["key"] == value


@pytest.mark.parametrize("value", [None, True, False, 0, 16384, 2.5, [4, 4], ["scu", "scp"], {}])
def test_non_strings_read_back(value):
    assert yaml.safe_load(f"key: {scalar(value)}")["key"] == value


def test_render_writes_every_shape_and_the_result_loads(tmp_path):
    result = ProbeResult(
        fields={
            "name": Finding("odd: name # with hash", "made up"),
            "ae_title": Finding("PACS 1", "given"),
            "timers": Section({"artim": Finding(2.5, "measured"), "idle": Finding(None, "not measured")}, "seconds"),
            "sop_classes": Finding(["verification", "ct"], "asked", {"verification": "accepted", "ct": "accepted"},
                                  ["not accepted: mr"]),
            "transfer_syntaxes": Finding([], "none in common"),
            "roles": Finding({"ct": ["scu"], "mr": []}, "asked", {"ct": "answered 1, 0", "mr": "answered 0, 0"}),
            "users": Finding({"alice": None}, "--user", {"alice": "--user"}),
            "async_window": Finding([2, 3], "answered"),
        },
        header=["a header", "with two lines\nin one"],
    )
    text = render(result)
    assert text.startswith("# a header\n# with two lines in one\n")
    assert "# transfer_syntaxes: none found" in text
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_profile(path)
    assert loaded.name == "odd: name # with hash"
    assert loaded.ae_title == "PACS 1"
    assert (loaded.timers.artim, loaded.timers.idle) == (2.5, None)
    assert loaded.sop_classes == ("verification", "ct")
    assert loaded.transfer_syntaxes == ("1.2.840.10008.1.2",)  # the suite's default: the probe found none
    assert dict(loaded.roles) == {"ct": ("scu",), "mr": ()}
    assert dict(loaded.users) == {"alice": None}
    assert loaded.async_window == (2, 3)
    for line in text.splitlines():
        assert line.lstrip().startswith("#") or " # " in line, line


def _names_in(node, out: set[str]) -> None:
    """SOP class names a scenario proposes, stores or requires (contexts, sop_class(es), roles)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "contexts" and isinstance(value, list):
                for entry in value:
                    if isinstance(entry, str):
                        out.add(entry)
                    elif isinstance(entry, dict) and isinstance(entry.get("abstract_syntax"), str):
                        out.add(entry["abstract_syntax"])
            elif key == "sop_classes" and isinstance(value, list):
                out.update(v for v in value if isinstance(v, str))
            elif key == "sop_class" and isinstance(value, str):
                out.add(value)
            elif key == "roles" and isinstance(value, dict):
                out.update(k for k in value if isinstance(k, str))
            elif isinstance(key, str) and key.startswith("roles."):
                out.add(key.split(".", 1)[1])
            _names_in(value, out)
    elif isinstance(node, list):
        for item in node:
            _names_in(item, out)


def test_every_registered_sop_class_the_scenarios_use_is_probed():
    names: set[str] = set()
    for path in (REPO / "scenarios").rglob("*.yaml"):
        _names_in(yaml.safe_load(path.read_text(encoding="utf-8")), names)
    used = set()
    for name in names:
        try:
            uid = resolve_uid(name)
        except ValueError:
            continue
        if uid in UID_dictionary:  # private UIDs are there on purpose, as SOP classes nobody supports
            used.add(uid)
    asked = {resolve_uid(n) for n in SOP_CLASSES}
    assert used, "no SOP class found in scenarios/"
    assert used <= asked, sorted(short_name(u) for u in used - asked)


def test_catalogue_sizes_keep_the_gentle_bound():
    """312 contexts fit in three A-ASSOCIATE-RQs of at most 128 (PS3.8 9.3.2.2), as the docs say."""
    assert len(SOP_CLASSES) * len(TRANSFER_SYNTAXES) <= 3 * 128
    assert len(set(SOP_CLASSES)) == len(SOP_CLASSES) and len(set(TRANSFER_SYNTAXES)) == len(TRANSFER_SYNTAXES)
