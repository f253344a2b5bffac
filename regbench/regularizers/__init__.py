"""Regularizers: the dropout family (one file each), penalties, mixing, label smoothing.

Models have named *slots* where a dropout-like module goes (on the input, after each
conv stage, after each hidden layer). A dropout type is a `DropoutSpec` registered in
`DROPOUTS`; the model asks it for the module of each slot and may let it wrap the
weight layers (DropConnect). Adding a type = one new file here (plus its YAML in
conf/dropout/): `DROPOUTS` imports every module of this package on first use, and
also plugins from outside the package (discovery.py; docs/architecture.md). Every random draw
of a regularizer goes through streams.py: each cell of a stack draws from its own generators.

The catalogue layer (data, models, regularizers), above core: these three may import each other
(a mixing augmentation is a regularizer run by the data pipeline) and core; nothing higher.
"""

from regbench.regularizers.base import DROPOUTS, DropoutSpec, Slot, resolve_rate  # noqa: F401
