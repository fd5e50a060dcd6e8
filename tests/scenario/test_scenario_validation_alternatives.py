"""Schema errors inside nested alternatives (anyOf within anyOf) are described, never raised as a traceback."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from dicomconf.scenario.validation import _leaves

NESTED = {"anyOf": [
    {"type": "integer"},
    {"anyOf": [{"type": "object", "properties": {"min": {"type": "integer"}}, "required": ["min"]},
               {"type": "string", "pattern": "^x"}]},
]}


@pytest.mark.parametrize("doc, message", [
    ({"min": "a"}, "'a' is not of type 'integer'"),
    ("y", "'y' does not match '^x'"),
    ({"max": 1}, "'min' is a required property"),
    ([1], "is not valid under any of the given schemas"),
])
def test_nested_alternatives_describe_the_branch_that_fits(doc, message):
    (error,) = Draft202012Validator(NESTED).iter_errors(doc)
    leaves = _leaves(error)
    assert any(message in leaf.message for leaf in leaves), [leaf.message for leaf in leaves]
