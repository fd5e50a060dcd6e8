"""The suite tests' shared kit (variant_kit) and the service variant tables sit beside them."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
