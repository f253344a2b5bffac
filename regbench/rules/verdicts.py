"""Verdict words from an interval: better / worse (by less than δ) / equivalent / undecided.

One rule, read by the report, `regbench compare`, the Python API and the `seed=auto` sweeper
(report/sequential.py): the verdict's interval is the two-sided (1 − level) interval, with
level = α / (m · K) (Bonferroni over the m comparisons of one metric in one report and over the
K planned looks of a `seed=auto` sweep; K = 1 otherwise). So

- **better / worse**: the interval excludes 0 (⇔ the adjusted p = min(1, m·K·p) < α);
  "…, by less than δ" when it also lies inside ±δ;
- **equivalent (within ±δ)**: the interval lies inside ±δ and contains 0. That is two one-sided
  tests (TOST) of |difference| ≥ δ, each at level/2;
- **undecided**: neither; `seeds_to_decide` says at how many seeds the observed mean and spread
  would decide it.

Zero spread is not certainty: an accuracy moves in steps of one example, so the t-tests floor the
spread of the per-seed differences at that step (`counted_on`; report/stats.py applies it).

The margin δ is declared once per metric kind (MARGINS) and can be overridden per report
(`--margin`, the `margin` config key: `parse_margins`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import numpy as np

from regbench.core.errors import ConfigError

# seed=auto's design (report/sequential.py), here so that a sweep reads them without importing the report
PILOT = 3  # seeds every cell gets before the first look
MAX_SEEDS = 20  # default seed budget per cell (hydra.sweeper.max_seeds)

ALPHA = 0.05  # two-sided error rate of every verdict (family-wise per metric, over all looks)
PCT = 100.0
# Equivalence margins δ per metric kind, in the metric's own units (accuracies as fractions).
# - acc (test/val accuracy, the accuracy gap): 1 percentage point: about the seed-to-seed spread
#   of one run on the bundled datasets and the smallest change an ablation table reports.
# - ece: 1 pp of calibration error, the same unit and the same reasoning as accuracy.
# - nll / loss (test NLL, val − train loss gap): 0.02 nats: a change of 0.02 in the mean log-loss
#   is a factor exp(0.02) ≈ 1.02 on the probability given to the true class, i.e. a 2% relative
#   change: the loss-side counterpart of a 1 pp accuracy change; regularizers that matter move
#   the loss gap by tenths of a nat (README), so 0.02 separates "matters" from "does not".
MARGINS: dict[str, float] = {"acc": 0.01, "ece": 0.01, "nll": 0.02, "loss": 0.02}
# How a metric is shown: (name, scale to display units, unit, digits); other metrics as stored.
DISPLAY: dict[str, tuple[str, float, str, int]] = {
    "test.acc": ("test acc", PCT, "pp", 1),
    "final.val_acc": ("val acc", PCT, "pp", 1),
    "final.gap_acc": ("gap acc", PCT, "pp", 1),
    "final.gap_loss": ("gap loss", 1.0, "nats", 3),
    "calibration.test.nll": ("test NLL", 1.0, "nats", 3),
    "calibration.test.ece": ("test ECE", PCT, "pp", 1),
}
# Headline metrics compared against the baseline, with their direction (+1: higher is better).
METRICS: dict[str, int] = {
    "test.acc": +1,
    "final.val_acc": +1,
    "final.gap_acc": -1,  # train − val accuracy: a smaller gap is less overfitting
    "final.gap_loss": -1,
    "calibration.test.nll": -1,
    "calibration.test.ece": -1,
}
BETTER, WORSE, EQUIVALENT, UNDECIDED, UNTESTABLE = "better", "worse", "equivalent", "undecided", "not testable"
DECIDED = (BETTER, WORSE, EQUIVALENT)
LEGEND = (
    "Verdicts: **better** / **worse**: the interval excludes 0; **…, by less than δ**: it also lies inside ±δ; "
    "**equivalent (within ±δ)**: it lies inside ±δ and contains 0 (two one-sided tests); **undecided**: neither, "
    "with the seeds at which the observed mean and spread would decide it; δ: 1 pp for accuracies and ECE, "
    "0.02 nats for losses and NLL unless --margin says otherwise. Zero spread is not certainty: an accuracy on "
    "N examples moves in steps of 1/N, so the spread of its per-seed differences counts as at least 1/N "
    "(seeds that all gain the same few examples are not decided by that alone)."
)

# Zero spread is not certainty. An accuracy counts examples: on a split of N it moves in steps of 1/N, so the
# per-seed difference of two runs' accuracies is a whole number of examples over N, and a few seeds can all
# differ by exactly the same number (three seeds that each gain one test example of 359). Their spread of 0
# says nothing about the spread between seeds, so the t-tests floor the spread of the per-seed differences at
# one step, 1/N (report/stats.py; why this rule and not another: README.md, "Reports"). Losses, NLL and ECE
# are continuous: no floor. The splits an accuracy counts on, from its name; a gap (train − val) counts on
# both, and the coarser step floors it.
SPLITS = ("train", "val", "test")


def display(metric: str) -> tuple[str, float, str, int]:
    return DISPLAY.get(metric, (metric, 1.0, "", 3))


def metric_kind(metric: str) -> str | None:
    """'acc' / 'ece' / 'nll' / 'loss' from the metric's name; None for a metric with no default margin."""
    leaf = metric.rsplit(".", 1)[-1]
    return next((kind for kind in ("ece", "nll", "loss", "acc") if kind in leaf), None)


def counted_on(metric: str) -> tuple[str, ...]:
    """The splits whose examples `metric` counts: ('test',) for test.acc, ('val',) for final.val_acc,
    ('train', 'val') for final.gap_acc; () for a continuous metric or a name that names no split."""
    if metric_kind(metric) != "acc":
        return ()
    words = set(re.split(r"[._]", metric))
    return SPLITS[:2] if "gap" in words else tuple(split for split in SPLITS if split in words)


def default_margin(metric: str) -> float:
    kind = metric_kind(metric)
    return MARGINS[kind] if kind else math.nan


def margin_text(metric: str, margin: float) -> str:
    """δ in the metric's display units: '1 pp', '0.02 nats', '0.5'; 'δ' where there is none (NaN): callers
    say "no margin" in their own words first."""
    _, scale, unit, _ = display(metric)
    return f"{margin * scale:.3g} {unit}".rstrip() if math.isfinite(margin) else "δ"


def level(m: int, looks: int = 1, alpha: float = ALPHA) -> float:
    """The per-comparison two-sided level: Bonferroni over m comparisons and K looks."""
    return alpha / (max(1, m) * max(1, looks))


def decide(low, high, margin, sign=1):
    """Decision codes from interval bounds (arrays broadcast; NaN bounds -> untestable).

    sign: +1 where higher is better. margin NaN: no equivalence (unless the interval is exactly
    [0, 0]: identical in every seed is inside any δ > 0).
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    margin, sign = np.asarray(margin, dtype=float), np.asarray(sign)
    up, down = low > 0, high < 0
    inside = ((low > -margin) & (high < margin)) | ((low == 0) & (high == 0))
    out = np.where(inside, EQUIVALENT, UNDECIDED).astype(object)
    out = np.where(up, np.where(sign > 0, BETTER, WORSE), out)
    out = np.where(down, np.where(sign > 0, WORSE, BETTER), out)
    out = np.where(np.isnan(low) | np.isnan(high), UNTESTABLE, out)
    return out


def by_less(low: float, high: float, margin: float) -> bool:
    """Excludes 0 and lies inside ±δ: 'better, by less than δ'."""
    return (low > 0 or high < 0) and -margin < low and high < margin


def words(decision: str, low: float, high: float, metric: str, margin: float, n: str,
          seeds_to_decide: float = math.nan) -> str:
    """The verdict as the tables print it, e.g. 'equivalent (within ±1 pp; n = 5)'."""
    delta = margin_text(metric, margin)
    if decision in (BETTER, WORSE):
        return f"{decision}, by less than {delta} (n = {n})" if by_less(low, high, margin) else f"{decision} (n = {n})"
    if decision == EQUIVALENT:  # without a margin (a metric with no default kind) only [0, 0] is equivalent
        within = f"within ±{delta}" if math.isfinite(margin) else "identical in every seed"
        return f"equivalent ({within}; n = {n})"
    if decision == UNDECIDED:
        more = "more than 100000" if math.isnan(seeds_to_decide) else f"{int(seeds_to_decide)}"
        side = " per side" if " vs " in n else ""  # Welch: n is 'a vs b'
        return f"undecided (n = {n}; {more} seeds{side} would decide it)"
    return f"{UNTESTABLE} (n = {n})"


def parse_margins(text: str | None, metrics: Iterable[str], primary: str, name: str = "--margin") -> dict[str, float]:
    """`--margin 0.02` (the primary metric) or `--margin test.acc=0.02,final.gap_loss=0.05` -> {metric: δ}.

    Values are in the metric's own units (accuracies as fractions: 0.02 = 2 pp). Raises
    ConfigError naming the bad part and the valid choices (`name`: the option or config key read).
    """
    if text is None or str(text).strip() == "":
        return {}
    metrics = list(metrics)
    usage = (f"valid: a positive number for {primary} (e.g. 0.02 = 2 pp) or METRIC=VALUE pairs, comma-separated, "
             f"METRIC one of {', '.join(metrics)}")
    out: dict[str, float] = {}
    for part in str(text).split(","):
        metric, sep, value = part.strip().rpartition("=")
        metric = metric.strip() if sep else primary
        if metric not in metrics:
            raise ConfigError(f"{name} {text!r}: unknown metric {metric!r}; {usage}")
        try:
            delta = float(value)
        except ValueError:
            raise ConfigError(f"{name} {text!r}: {value.strip()!r} is not a number; {usage}") from None
        if not (math.isfinite(delta) and delta > 0):
            raise ConfigError(f"{name} {text!r}: {value.strip()!r} must be a positive number; {usage}")
        if metric_kind(metric) in ("acc", "ece") and delta >= 1:
            raise ConfigError(f"{name} {text!r}: {metric} is a fraction, so {delta:g} would be "
                              f"{delta * PCT:g} pp; {usage}")
        out[metric] = delta
    return out


def margin_for(metric: str, margins: Mapping[str, float] | None) -> float:
    return (margins or {}).get(metric, default_margin(metric))
