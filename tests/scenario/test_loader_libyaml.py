"""The loader composes with libyaml when it can: same values, same lines, same errors (dicomconf.scenario.loader)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dicomconf.scenario import loader
from dicomconf.scenario.loader import SourceError, load_yaml_text

REPO = Path(__file__).resolve().parents[2]
needs_libyaml = pytest.mark.skipif(loader._CLoader is None, reason="PyYAML was built without libyaml")


def _both(text: str, file: str = "f.yaml") -> tuple[loader.Located, loader.Located]:
    return load_yaml_text(text, file, fast=True), load_yaml_text(text, file, fast=False)


def _same(fast: loader.Located, pure: loader.Located) -> None:
    assert fast.value == pure.value
    assert fast.lines == pure.lines
    assert fast.key_lines == pure.key_lines
    assert fast.order == pure.order


def _yaml_files() -> list[Path]:
    found = [*sorted((REPO / "scenarios").rglob("*.y*ml")), *sorted((REPO / "dicomconf").rglob("*.y*ml"))]
    return [p for p in found if p.suffix in (".yaml", ".yml")]


@needs_libyaml
def test_libyaml_is_what_composes(monkeypatch):
    """The fast path really is libyaml's composer (the pure-Python one is not called)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the pure-Python composer was used")

    monkeypatch.setattr(loader._Loader, "get_single_node", refuse)
    assert load_yaml_text("a: [1, 2]\nb: {c: true}\n").value == {"a": [1, 2], "b": {"c": True}}


@needs_libyaml
def test_every_shipped_yaml_file_loads_the_same_with_both_composers():
    files = _yaml_files()
    assert len(files) > 100  # the scenario library and the built-in profiles
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            fast, pure = _both(text, str(path))
        except SourceError as exc:  # a file meant to be broken: both must say the same
            with pytest.raises(SourceError) as again:
                load_yaml_text(text, str(path), fast=False)
            assert str(again.value) == str(exc)
            continue
        _same(fast, pure)


DOC = """\
# a comment first
base: &base
  called: PACS
  port: 104
merged:
  <<: *base
  tls: 2762
block: |
  two
  lines
folded: >-
  one
  line
flow: {a: [1, 2, {b: null}], "c d": 'e'}
list:
  - on: second
  -
    - deep: yes
    - [x, y]
  - &anchor {k: 1}
  - *anchor
empty:
last: 1.5
"""


@needs_libyaml
def test_anchors_merges_block_scalars_and_flow_keep_their_lines():
    fast, pure = _both(DOC)
    _same(fast, pure)
    assert fast.value["merged"] == {"called": "PACS", "port": 104, "tls": 2762}
    assert fast.value["list"][0] == {"on": "second"}  # YAML 1.2 booleans in both
    assert fast.value["list"][1][0] == {"deep": "yes"}
    assert fast.line_of(("list", 3, "k")) == 20  # an alias: the line of the node it names
    assert fast.line_of(("last",)) == 23


BROKEN = [
    ("id: x\nsteps: [1, 2\nother: 3\n", 3, "YAML syntax error"),  # unclosed flow sequence
    ("a: b\n---\nc: d\n", 2, "YAML syntax error"),  # two documents
    ("\ta: 1\n", 1, "YAML syntax error"),  # a tab cannot start a token
    ("a: &x 1\nb: *y\n", 2, "YAML syntax error"),  # undefined alias
    ("- a\nb: 1\n", 2, "YAML syntax error"),  # a mapping key after a sequence
    ("a: 1\nb:\n  c: 1\n  c: 2\n", 4, "duplicate key 'c'"),
    ("a: !!python/object:os.system x\n", 1, "YAML error"),  # no unsafe tags
    ("? [1, 2]\n: x\n", 1, "a mapping key cannot be a list"),
]


@needs_libyaml
@pytest.mark.parametrize("text, line, words", BROKEN)
def test_errors_are_word_for_word_those_of_the_pure_python_loader(text, line, words):
    errors = []
    for fast in (True, False):
        with pytest.raises(SourceError) as exc:
            load_yaml_text(text, "bad.yaml", fast=fast)
        errors.append(str(exc.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"bad.yaml:{line}: ") and words in errors[0]


@needs_libyaml
def test_a_character_only_the_pure_python_reader_refuses_is_refused(monkeypatch):
    """The pure-Python reader's printable check runs before libyaml, whose rules differ."""
    text = "a: \x07\n"
    with pytest.raises(SourceError) as exc:
        load_yaml_text(text, "ctl.yaml")
    assert str(exc.value) == str(pytest.raises(SourceError, load_yaml_text, text, "ctl.yaml", fast=False).value)
    assert "special characters are not allowed" in str(exc.value)


def test_without_libyaml_the_pure_python_composer_does_it(monkeypatch):
    monkeypatch.setattr(loader, "_CLoader", None)
    doc = load_yaml_text("a:\n  b: [1, 2]\n", "f.yaml")
    assert doc.value == {"a": {"b": [1, 2]}} and doc.line_of(("a", "b", 1)) == 2
    with pytest.raises(SourceError, match=r"^f\.yaml:3: YAML syntax error"):
        load_yaml_text("id: x\nsteps: [1, 2\nother: 3\n", "f.yaml")

