"""What the report needs to know of each built-in dropout type, declared once and free of torch: the
`dropout.*` keys that set its strength and its colour in every figure.

Both sides read this table: the dropout specs (regularizers/base.py DropoutSpec: `rate_keys` and
`colour` of a built-in type come from here) and the report (report/table.py, figures_compare.py), which
imports no torch (1.5-2 s, more than all of a report's tables). A plugin's type declares both on its own
class; the report finds it in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

# dropout.* keys that set a type's strength; the first one is its main rate (the rate-sweep axis)
RATE_KEYS = ("p", "p_input", "p_conv", "per_layer", "p_attn")


@dataclass(frozen=True)
class TypeFacts:
    """The part of a DropoutSpec a report reads (same attribute names)."""

    name: str
    colour: str | None  # its colour in every report figure (None: one derived from the name)
    rate_keys: tuple[str, ...] = RATE_KEYS  # dropout.* keys that set its strength; () = no regularization


BUILT_IN: dict[str, TypeFacts] = {t.name: t for t in (
    TypeFacts("none", "#4d4d4d", ()),  # the baseline: nothing to set
    TypeFacts("standard", "#1f77b4"),
    TypeFacts("original", "#17becf"),
    TypeFacts("gaussian", "#8c564b"),
    TypeFacts("alpha", "#ff7f0e"),
    TypeFacts("spatial", "#2ca02c"),
    TypeFacts("dropblock", "#9467bd"),
    TypeFacts("dropconnect", "#d62728"),
)}
