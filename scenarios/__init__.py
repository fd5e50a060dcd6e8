"""The conformance scenario library, installed as the package ``dicomconf.scenarios``.

Theory of operation
-------------------
The YAML files below this directory are the suite.  They stay at the top
level of the source tree, where people read and extend them, and
``pyproject.toml`` maps this directory onto the package
``dicomconf.scenarios`` so that a wheel and an editable install carry the
same files.  :mod:`dicomconf.scenario.library` finds them through
:mod:`importlib.resources`.  This module holds no code.
"""
