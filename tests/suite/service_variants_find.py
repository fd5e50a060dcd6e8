"""Broken reference SCPs for the find scenarios (see variant_kit)."""

from __future__ import annotations

from variant_kit import FINDS, Variant, refusing, replacing

VARIANTS: dict[str, Variant] = {
    "find-refused": Variant(None, ("services.find-study-wildcard", "services.find-study-date-range"),
                            handlers=replacing(FINDS, lambda original: refusing(0xC000))),
}
