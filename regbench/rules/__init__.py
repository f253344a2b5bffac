"""The config rules: the typed schema and its validation, which settings take effect, the protocol,
and the verdicts' margins and words.

- config.py    typed dataclass schema (defaults, one comment each), the keys' roles, the config hash
- validate.py  the rules every config passes (a table: key -> choice, range, bound), and the combinations
- active.py    which keys take effect for a given dataset / dropout type / augmentation
- protocol.py  which split and which epoch score a run (trainer.select), the early-stopping tracker
- verdicts.py  the comparisons' rule: margins, verdict words, the seed budget of seed=auto (numpy only)

May import: the catalogue's registries (data, models, regularizers) and core; never records,
engine, report, sweeps, cli or api.
"""
