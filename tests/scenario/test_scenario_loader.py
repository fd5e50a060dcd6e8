"""The line-keeping loader, templates and durations (dicomconf.scenario.loader / expr)."""

from __future__ import annotations

import pytest

from dicomconf.scenario.expr import ExpressionError, duration, render, render_all
from dicomconf.scenario.loader import SourceError, load_yaml, load_yaml_text

DOC = """\
id: x
steps:
  - connect: {as: a}
  - expect:
      pdu: A-ABORT
      reason: [0, 1]
      within: 5s
  - parallel:
      - - sleep: 1s
      - - sleep: 2s
"""


def test_every_value_has_its_line():
    doc = load_yaml_text(DOC, "f.yaml")
    assert doc.line_of(("id",)) == 1
    assert doc.line_of(("steps", 0, "connect", "as")) == 3
    assert doc.line_of(("steps", 1, "expect")) == 4
    assert doc.line_of(("steps", 1, "expect", "within")) == 7
    assert doc.line_of(("steps", 1, "expect", "reason", 1)) == 6
    assert doc.line_of(("steps", 2, "parallel", 1, 0, "sleep")) == 10
    # a path below a scalar falls back to the nearest ancestor
    assert doc.line_of(("steps", 1, "expect", "within", "deeper")) == 7


def test_sub_document_keeps_absolute_lines():
    doc = load_yaml_text(DOC, "f.yaml").sub(("steps", 1))
    assert doc.value["expect"]["within"] == "5s"
    assert doc.line_of(("expect", "within")) == 7


def test_yaml_12_booleans_keep_on_a_string_key():
    doc = load_yaml_text("on: main\nyes_: yes\nflag: true\noff: off\n")
    assert doc.value == {"on": "main", "yes_": "yes", "flag": True, "off": "off"}


def test_duplicate_key_is_an_error_with_its_line():
    with pytest.raises(SourceError) as exc:
        load_yaml_text("a: 1\nb:\n  c: 1\n  c: 2\n", "dup.yaml")
    assert str(exc.value) == "dup.yaml:4: duplicate key 'c'"


def test_syntax_error_has_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\nsteps: [1, 2\nother: 3\n")
    with pytest.raises(SourceError) as exc:
        load_yaml(path)
    assert exc.value.file == str(path) and exc.value.line == 3
    assert "YAML syntax error" in exc.value.message


def test_unreadable_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")


class Prof:
    artim = 2
    timers = {"idle": 4}
    _secret = 1


def test_templates_render_values_and_strings():
    ns = {"profile": Prof(), "index": 3, "saved": 16384}
    assert render("{profile.artim + 5}s", ns) == "7s"
    assert render("{profile.artim * 1.5}", ns) == 3.0
    assert render("held{index}", ns) == "held3"
    assert render("{saved}", ns) == 16384
    assert render("{{literal}}", ns) == "{literal}"
    assert render("{profile.timers.idle > 3 and index == 3}", ns) is True
    assert render("{max(index, 10) if index else 0}", ns) == 10
    assert render_all({"a": ["{index}", {"b": "x{index}"}], "c": 5}, ns) == {"a": [3, {"b": "x3"}], "c": 5}
    assert render("{lower(title)}-{upper(title)}", {"title": "Pacs-1"}) == "pacs-1-PACS-1"


@pytest.mark.parametrize(
    "text, why",
    [
        ("{__import__('os').system('true')}", "not allowed"),
        ("{profile._secret}", "not accessible"),
        ("{profile.__class__}", "not accessible"),
        ("{'a' * 10}", "cannot apply"),
        ("{unknown + 1}", "unknown name"),
        ("{1 / 0}", "division"),
        ("{lambda: 1}", "not allowed"),
        ("{[x for x in (1, 2)]}", "not allowed"),
    ],
)
def test_unsafe_or_wrong_expressions_are_refused(text, why):
    with pytest.raises(ExpressionError, match=why):
        render(text, {"profile": Prof()})


def test_durations():
    assert duration("5s") == 5.0
    assert duration("500ms") == 0.5
    assert duration("2m") == 120.0
    assert duration(1.5) == 1.5
    assert duration("{profile.artim + 5}s", {"profile": Prof()}) == 7.0
    assert duration("{profile.artim / 4}", {"profile": Prof()}) == 0.5
    for bad in ("5x", "-1s", True, "soon"):
        with pytest.raises(ExpressionError):
            duration(bad)
