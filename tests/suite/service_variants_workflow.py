"""Broken reference SCPs for the workflow scenarios (see variant_kit)."""

from __future__ import annotations

from variant_kit import Variant

VARIANTS: dict[str, Variant] = {}
