"""pytest fixtures the plugin gives every test: ``dicomconf_fake_scp``.

Theory of operation
-------------------
``dicomconf_fake_scp`` is a factory: ``dicomconf_fake_scp(script, **options)``
builds a :class:`~dicomconf.scenario.fake_scp.FakeSCP` (the options are its
keyword arguments), starts it and returns it, listening on a free port of
127.0.0.1 unless told otherwise; a test may start several.  The test runs
the SCU under test against ``scp.host``/``scp.port`` (called AE title
``scp.ae_title``), then reads ``scp.wait()``: the verdict on the SCU
(PS3.8 9.2, PS3.7 9.3) and what it sent.  At teardown every fake SCP the
test started is stopped (listener and connections closed, thread joined),
whatever the test's outcome; teardown judges nothing, so a test asserts
``scp.wait().assert_conforms()`` (or ``passed``) itself.  A bad script
raises :class:`~dicomconf.scenario.loader.SourceError` from the call, with
the script's ``file:line``.

The plugin (:mod:`dicomconf.pytest_plugin`) imports this module, so the
fixture is there wherever the plugin is loaded, without a conftest; the
engine (and pydicom) is imported only when a test asks for the fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from dicomconf.scenario.fake_scp import FakeSCP


@pytest.fixture
def dicomconf_fake_scp() -> Iterator[Callable[..., FakeSCP]]:
    """A factory of started fake SCPs, each stopped at teardown (see the module docstring)."""
    from dicomconf.scenario.fake_scp import FakeSCP  # here, not at the top: loading the plugin stays light

    started: list[FakeSCP] = []

    def start(script: Any, **options: Any) -> FakeSCP:
        __tracebackhide__ = True  # a bad script's SourceError points at the test's call
        scp = FakeSCP(script, **options)
        started.append(scp)
        return scp.start()

    yield start
    problems = []
    for scp in reversed(started):
        try:
            scp.stop()
        except RuntimeError as exc:
            problems.append(f"{scp!r}: {exc}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
