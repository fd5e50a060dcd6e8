"""Every area of the shipped scenario library holds at least ten scenarios.

Theory of operation
-------------------
The library that ships with the package (``dicomconf.scenario.library.shipped``,
the checkout's ``scenarios/`` in an editable install) is read with the same
catalogue ``dicomconf scenarios list`` prints; only scenarios that validate
count, each id once.  One test per area of the scenario model
(``dicomconf.scenario.model.AREAS``) fails when that area has fewer than
``MINIMUM`` scenarios, and names the ones it has.  An area may be left out of
the count only by naming it in ``NOT_COUNTED`` with the reason; a second test
keeps that table honest (it names real areas only), so an area added to the
model is counted from the start.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from dicomconf.scenario.library import catalogue, shipped
from dicomconf.scenario.model import AREAS

MINIMUM = 10

# Areas the coverage rule of the suite does not reach, each with its reason.
NOT_COUNTED: dict[str, str] = {}


@pytest.fixture(scope="module")
def by_area() -> dict[str, list[str]]:
    root = shipped()
    assert root is not None, "the scenario library (dicomconf.scenarios) is not installed as files on disk"
    out: dict[str, set[str]] = defaultdict(set)
    for info in catalogue([root]):
        if info.error is None:
            out[info.area].add(info.id)
    return {area: sorted(ids) for area, ids in out.items()}


@pytest.mark.parametrize("area", [a for a in AREAS if a not in NOT_COUNTED])
def test_area_has_at_least_ten_scenarios(by_area: dict[str, list[str]], area: str) -> None:
    ids = by_area.get(area, [])
    assert len(ids) >= MINIMUM, (
        f"area {area!r} has {len(ids)} scenario(s), fewer than {MINIMUM}: {', '.join(ids) or 'none'}"
    )


def test_exempt_areas_are_real_areas() -> None:
    assert set(NOT_COUNTED) <= set(AREAS), f"NOT_COUNTED names unknown areas: {set(NOT_COUNTED) - set(AREAS)}"
