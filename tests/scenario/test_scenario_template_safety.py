"""Scenario and profile files are data: a template can neither run code nor read a file.

Hostile templates each end as a clear ``file:line`` error of their step, with nothing executed; a store
step reads files below its scenario's directory only.
"""

from __future__ import annotations

import dataclasses
import os
import types

import pytest

from dicomconf.scenario.engine import Target
from dicomconf.scenario.expr import ExpressionError, render
from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import Profile
from dicomconf.scenario.requestor import Runner

HEAD = """\
id: safety.hostile
title: a hostile template
clauses: [PS3.8 9.3]
severity: must
area: negotiation
steps:
"""


def _profile() -> Profile:
    return Profile(ae_title="DICOMCONF", users={"alice": "s3cret"})


def _run(tmp_path, step: str) -> SourceError:
    """Play a one-step scenario (no target needed: the step fails before any connection)."""
    path = tmp_path / "hostile.yaml"
    path.write_text(HEAD + step)
    (entry,) = load_file(path)
    assert entry.error is None, entry.error
    runner = Runner(entry.scenario, _profile(), Target("127.0.0.1", 9))
    with pytest.raises(SourceError) as info:
        runner.run(None, time_limit=10)
    assert runner.all_connections == []
    return info.value


HOSTILE = {
    "globals through the class": ("{profile.__class__.__init__.__globals__}", "'__class__' is not accessible"),
    "import and run": ("{__import__('os').system('touch MARKER')}", "calling this is not allowed"),
    "import": ("{__import__('os')}", "function '__import__' is not allowed"),
    "open a file": ("{open('/etc/passwd').read()}", "calling this is not allowed"),
    "eval": ("{eval('1')}", "function 'eval' is not allowed"),
    "a method of a string": ("{profile.name.upper()}", "calling this is not allowed"),
    "a method read, not called": ("{profile.name.upper}", "str has no field 'upper'"),
    "subclasses walk": ("{[].__class__.__base__.__subclasses__()}", "calling this is not allowed"),
    "mapping internals": ("{profile.users.__getitem__}", "'__getitem__' is not accessible"),
    "a lambda": ("{(lambda: open('/etc/passwd'))()}", "calling this is not allowed"),
    "a comprehension": ("{[c for c in profile.name]}", "ListComp is not allowed"),
    "string formatting": ("{'%s' % profile}", "cannot apply Mod"),
    "an f-string": ("{f'{profile.__class__}'}", "'__class__' is not accessible"),
    "walrus": ("{(x := 1)}", "NamedExpr is not allowed"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_a_file_line_error_and_runs_nothing(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    template, why = HOSTILE[name]
    error = _run(tmp_path, f'  - sleep: "{template}"\n')
    assert error.line == 7 and str(error).startswith(f"{tmp_path / 'hostile.yaml'}:7: steps[0].sleep: ")
    assert why in str(error), str(error)
    assert not os.path.exists(tmp_path / "MARKER")


def test_attributes_reach_data_only():
    """A chain of attributes may not leave plain data: no function, module, frame or class on the way."""
    def gen():
        yield 1

    @dataclasses.dataclass
    class Box:
        value: int = 5
        nested: dict = dataclasses.field(default_factory=lambda: {"k": 1})

    ns = {"box": Box(), "mod": types.SimpleNamespace(os=os, run=os.system), "g": gen(), "plain": "text"}
    assert render("{box.value + box.nested.k}", ns) == 6
    for text, why in (
        ("{mod.os.environ}", "has no field 'os'"),       # a module is not data
        ("{mod.run}", "has no field 'run'"),             # nor a function
        ("{g.gi_frame.f_globals}", "has no field 'gi_frame'"),  # nor a frame
        ("{box.nested.__class__}", "not accessible"),
        ("{plain.join}", "has no field 'join'"),
        ("{g[0]}", "cannot be indexed"),
    ):
        with pytest.raises(ExpressionError, match=why):
            render(text, ns)


def test_legal_templates_still_work():
    ns = {"profile": _profile(), "index": 2}
    assert render("{profile.users[min(profile.users)] + '-x'}", ns) == "s3cret-x"
    assert render("{profile.ae_title}-{index}", ns) == "DICOMCONF-2"


@pytest.mark.parametrize("file", ["../outside.dcm", "../../etc/passwd", "/etc/passwd", "data/../../outside.dcm",
                                  "{'..' + '/outside.dcm'}"])
def test_store_file_outside_the_scenario_directory_is_refused(tmp_path, file):
    (tmp_path / "outside.dcm").write_bytes(b"\0" * 132 + b"DICM")
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    path = scenarios / "hostile.yaml"
    path.write_text(HEAD + f'  - store: {{file: "{file}"}}\n')
    (entry,) = load_file(path)
    assert entry.error is None, entry.error
    runner = Runner(entry.scenario, _profile(), Target("127.0.0.1", 9))
    with pytest.raises(SourceError, match=r"hostile\.yaml:7: steps\[0\]\.store\.file: .* is outside the "
                                          r"scenario's directory"):
        runner.run(None, time_limit=10)
    assert runner.all_connections == []


def test_store_file_through_a_link_that_leads_out_is_refused(tmp_path):
    (tmp_path / "outside.dcm").write_bytes(b"\0" * 132 + b"DICM")
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "data").symlink_to(tmp_path)  # data/outside.dcm resolves outside the directory
    path = scenarios / "hostile.yaml"
    path.write_text(HEAD + '  - store: {file: "data/outside.dcm"}\n')
    (entry,) = load_file(path)
    runner = Runner(entry.scenario, _profile(), Target("127.0.0.1", 9))
    with pytest.raises(SourceError, match=r"hostile\.yaml:7: steps\[0\]\.store\.file: .* is outside the "
                                          r"scenario's directory"):
        runner.run(None, time_limit=10)
    assert runner.all_connections == []


def test_store_file_below_the_scenario_directory_is_looked_up_there(tmp_path):
    path = tmp_path / "hostile.yaml"
    path.write_text(HEAD + '  - store: {file: "data/./missing.dcm"}\n')
    (entry,) = load_file(path)
    runner = Runner(entry.scenario, _profile(), Target("127.0.0.1", 9))
    with pytest.raises(SourceError, match=r"hostile\.yaml:7: steps\[0\]\.store\.file: no such file "
                                          r".*data/missing\.dcm"):
        runner.run(None, time_limit=10)
