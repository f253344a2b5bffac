"""Calibration and MC-dropout uncertainty: NLL, Brier, ECE, predictive entropy, mutual information.

MC dropout (Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016): keep the
dropout-like modules stochastic at test time, average the softmax of T passes,
p̄ = (1/T) Σ_t softmax(f_t(x)), and score p̄. Deterministic evaluation is the weight-scaling
rule (Srivastava et al., JMLR 2014 §7, Fig. 11 compares the two as T grows).

Metrics of a (T, N, K) table of per-pass probabilities (T = 1: deterministic):
  acc          argmax p̄ == y
  nll          -log p̄[y]                     (average the probabilities, then take the log)
  brier        Σ_k (p̄_k - onehot_k)²          (Brier 1950, summed over classes, mean over examples)
  ece          Σ_b n_b/N |acc_b - conf_b|     15 equal-width confidence bins (lo, hi] (Guo et al. 2017)
  entropy      H[p̄] = -Σ_k p̄_k log p̄_k       (total predictive uncertainty, nats)
  mutual_info  H[p̄] - (1/T) Σ_t H[p_t]         (BALD, Houlsby et al. 2011: the model's part; 0 if T = 1)

Everything accumulates on the device per chunk of examples; one host sync per split.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.modules.dropout import _DropoutNd

from regbench.engine.evaluate import EVAL_BATCH, eval_mode, fork_rng, restore_modes
from regbench.regularizers import streams

log = logging.getLogger("regbench")

METRICS = ("acc", "nll", "brier", "ece", "entropy", "mutual_info")
MC_ROWS = EVAL_BATCH  # memory budget of one MC forward pass, in rows (T copies x examples): as deterministic eval
PROBE_COPIES = 8  # copies of one example in the probe for noise shared across the batch
EPOCH_COLUMNS = ["mc_val_acc", "mc_val_nll", "mc_val_ece"]  # metrics.csv extras with eval.mc_every_epoch=true
CONVERGENCE_COLUMNS = ["samples", "mc_acc", "mc_nll", "det_acc", "det_nll"]  # mc_convergence.csv (test split)


# ---------------------------------------------------------------------------- which modules are stochastic


def is_stochastic(module) -> bool:
    """torch's dropout modules (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout) and any
    module whose class (or instance) says `stochastic = True` (our custom dropout-like modules)."""
    return isinstance(module, _DropoutNd) or getattr(module, "stochastic", False) is True


def stochastic_modules(model) -> list:
    return [m for m in model.modules() if is_stochastic(m)]


@contextmanager
def mc_mode(model):
    """Eval mode for everything (BatchNorm uses its running stats and leaves them alone), then train
    mode for the stochastic modules only, each by its own flag: `m.train()` would recurse into a
    wrapped layer's children. Every module's previous mode is restored on exit."""
    with restore_modes(model):
        model.eval()
        for m in stochastic_modules(model):
            m.training = True
        yield model


def warn_ineffective(model, ev) -> None:
    """One warning per run for MC settings that cannot do what they say."""
    if ev.mc_samples > 0 and not stochastic_modules(model):
        log.warning("eval.mc_samples=%d but the model has no dropout-like layer: MC dropout metrics equal "
                    "the deterministic ones", ev.mc_samples)
    if ev.mc_every_epoch and ev.mc_samples == 0:
        log.warning("eval.mc_every_epoch=true has no effect with eval.mc_samples=0")


# ---------------------------------------------------------------------------- metrics of probability tables


class Accumulator:
    """Sums of the metrics above over chunks of examples, on the device.

    add(log_probs, y): log_probs (T, b, K) per-pass log-softmax of b examples, y (b,).
    convergence=True also tracks acc and NLL of the running mean over the first t passes,
    t = 1..T (no extra passes: the same T draws, averaged cumulatively).
    """

    def __init__(self, n_bins: int, device, convergence: bool = False):
        z = lambda *shape: torch.zeros(shape, device=device, dtype=torch.float64)  # noqa: E731
        self.n_bins = n_bins
        self.sums = z(len(METRICS))  # acc, nll, brier, (ece from bins), entropy, mutual_info
        self.bin_conf, self.bin_correct, self.bin_count = z(n_bins), z(n_bins), z(n_bins)
        self.inner_edges = torch.linspace(0, 1, n_bins + 1, device=device)[1:-1]
        self.convergence = convergence
        self.conv_correct = self.conv_nll = None
        self.n = 0

    def add(self, log_probs: torch.Tensor, y: torch.Tensor) -> None:
        log_probs = log_probs.float()
        t = log_probs.shape[0]
        log_mean = torch.logsumexp(log_probs, 0) - math.log(t)  # (b, K) log p̄, stable for tiny p
        p = log_mean.exp()
        conf, pred = p.max(1)
        correct = (pred == y).double()
        entropy = -torch.where(p > 0, p * log_mean, 0.0).sum(1)  # (b,)
        if t > 1:
            per_pass = -torch.where(log_probs > -math.inf, log_probs.exp() * log_probs, 0.0).sum(2)  # (T, b)
            mutual_info = (entropy - per_pass.mean(0)).clamp_min(0)  # >= 0 by Jensen; clamp rounding
        else:
            mutual_info = torch.zeros_like(entropy)
        nll = -log_mean.gather(1, y[:, None]).squeeze(1)
        brier = (p - F.one_hot(y, p.shape[1]).float()).square().sum(1)
        zero = torch.zeros_like(entropy)
        per_example = torch.stack([correct, nll.double(), brier.double(), zero.double(), entropy.double(),
                                   mutual_info.double()])  # (6, b): summed in float64, like the curve below
        self.sums += per_example.sum(1)
        idx = torch.bucketize(conf, self.inner_edges)  # bin b holds conf in (b/M, (b+1)/M]
        self.bin_conf.index_add_(0, idx, conf.double())
        self.bin_correct.index_add_(0, idx, correct)
        self.bin_count.index_add_(0, idx, torch.ones_like(correct))
        if self.convergence:
            counts = torch.arange(1, t + 1, device=log_probs.device, dtype=log_probs.dtype).log()
            running = torch.logcumsumexp(log_probs, 0) - counts[:, None, None]  # (T, b, K)
            ok = (running.argmax(2) == y).double().sum(1)  # (T,)
            nll_t = -running.gather(2, y[None, :, None].expand(t, -1, 1)).squeeze(2).double().sum(1)
            self.conv_correct = ok if self.conv_correct is None else self.conv_correct + ok
            self.conv_nll = nll_t if self.conv_nll is None else self.conv_nll + nll_t
        self.n += len(y)

    def result(self) -> Result:
        """One host sync: the metrics dict, the reliability bins and (if tracked) the convergence curve."""
        n = max(self.n, 1)
        ece = (self.bin_correct - self.bin_conf).abs().sum() / n
        parts = [self.sums / n, ece.view(1), self.bin_conf, self.bin_correct, self.bin_count]
        if self.convergence:
            parts += [self.conv_correct / n, self.conv_nll / n]
        flat = torch.cat(parts).tolist()
        k, m = len(METRICS), self.n_bins
        metrics = dict(zip(METRICS, flat[:k], strict=True))
        metrics["ece"] = flat[k]
        conf, correct, count = (flat[k + 1 + j * m : k + 1 + (j + 1) * m] for j in range(3))
        bins = {  # empty bins: count 0, confidence and accuracy 0 (weight them by count)
            "bin_confidence": [c / max(c_n, 1) for c, c_n in zip(conf, count, strict=True)],
            "bin_accuracy": [a / max(c_n, 1) for a, c_n in zip(correct, count, strict=True)],
            "bin_count": [int(c_n) for c_n in count],
        }
        rest = flat[k + 1 + 3 * m :]
        curve = (rest[: len(rest) // 2], rest[len(rest) // 2 :]) if self.convergence else None
        return Result(metrics, bins, curve)


@dataclass
class Result:
    metrics: dict  # METRICS -> float
    bins: dict  # bin_confidence, bin_accuracy, bin_count (lists of n_bins)
    curve: tuple[list, list] | None = None  # (acc, nll) of the running MC mean after t = 1..T passes


def table_metrics(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15, convergence: bool = False) -> Result:
    """Metrics of a probability table: (N, K) for one pass, (T, N, K) for T passes."""
    probs = probs if probs.dim() == 3 else probs[None]
    acc = Accumulator(n_bins, probs.device, convergence)
    acc.add(probs.log(), y)
    return acc.result()


# ---------------------------------------------------------------------------- forward passes


def _shares_noise(model, xb: torch.Tensor, autocast) -> bool:
    """Probe: PROBE_COPIES copies of one example in one batch. Identical outputs mean the noise is drawn
    once per forward pass for the whole batch (dropconnect with dropout.mask=batch), so the T copies of a
    repeated batch would all get the same mask: such models need one forward pass per sample instead.
    (A rare false positive, e.g. a tiny rate that dropped nothing, only costs speed.)"""
    with autocast():
        out = model(xb[:1].expand(PROBE_COPIES, *xb.shape[1:]).contiguous()).float()
    return torch.allclose(out, out[:1].expand_as(out), rtol=1e-4, atol=1e-6)  # tolerance: GEMM rounding by row


def _log_probs(model, xb: torch.Tensor, samples: int, shared: bool, autocast) -> torch.Tensor:
    """(T, b, K) log-softmax of T passes over the normalised batch xb (b, ...)."""
    b = len(xb)
    with autocast():
        if shared:  # noise shared across the batch: one pass per sample (a loop over T, only here)
            logits = torch.stack([model(xb) for _ in range(samples)])
        else:  # the T copies ride along the batch dim: (T*b, ...) -> (T, b, K), one forward pass
            logits = model(xb.repeat(samples, *[1] * (xb.dim() - 1))).view(samples, b, -1)
    return F.log_softmax(logits.float(), dim=-1)


@torch.no_grad()
def evaluate_split(model, x, y, normalize, autocast, samples: int = 0, n_bins: int = 15, mode: str = "eval",
                   convergence: bool = False, generator: torch.Generator | None = None) -> Result:
    """samples=0: one deterministic pass in `mode` (eval.mode). samples=T: MC dropout in mc_mode, T passes,
    batched over T in chunks of at most MC_ROWS rows. A model without stochastic modules gets one pass
    (the T passes would be identical); its curve repeats that pass T times. Masks come from `generator`
    (the cell's evaluation stream); the global RNG is left as it was (per-epoch MC must not change training)."""
    acc = Accumulator(n_bins, x.device, convergence)
    if samples == 0:
        with eval_mode(model, mode, generator):
            for i in range(0, len(x), EVAL_BATCH):
                acc.add(_log_probs(model, normalize(x[i : i + EVAL_BATCH]), 1, False, autocast), y[i : i + EVAL_BATCH])
        return acc.result()
    passes = samples if stochastic_modules(model) else 1
    with mc_mode(model), fork_rng(x.device), streams.drawing([generator]):
        shared = passes > 1 and len(x) > 0 and _shares_noise(model, normalize(x[:1]), autocast)
        chunk = EVAL_BATCH if shared else max(1, MC_ROWS // passes)
        for i in range(0, len(x), chunk):
            acc.add(_log_probs(model, normalize(x[i : i + chunk]), passes, shared, autocast), y[i : i + chunk])
    result = acc.result()
    if result.curve is not None and passes < samples:
        result.curve = tuple(c * samples for c in result.curve)
    return result


def epoch_columns(model, x, y, normalize, autocast, ev, generator: torch.Generator) -> dict:
    """MC-dropout metrics of the validation split for one metrics.csv row (EPOCH_COLUMNS)."""
    m = evaluate_split(model, x, y, normalize, autocast, ev.mc_samples, ev.ece_bins, generator=generator).metrics
    return {"mc_val_acc": m["acc"], "mc_val_nll": m["nll"], "mc_val_ece": m["ece"]}


def final_blocks(model, data, autocast, ev, generator: torch.Generator) -> tuple[dict, list[dict] | None]:
    """summary.json blocks after training, with the weights of the test evaluation, and the convergence rows.

    calibration: {"val": {METRICS}, "test": {METRICS}, "calibration": {bins of test}}  deterministic, in eval.mode
    mc:          {"samples": T, "val": ..., "test": ..., "calibration": {bins of test}}  only with eval.mc_samples > 0
    rows:        mc_convergence.csv, one per t = 1..T: running-mean MC acc/NLL on test and the deterministic values
    """
    splits = {"val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}

    def block(t: int, **extra) -> tuple[dict, dict]:
        results = {name: evaluate_split(model, x, y, data.normalize, autocast, t, ev.ece_bins, ev.mode,
                                        convergence=t > 0 and name == "test", generator=generator)
                   for name, (x, y) in splits.items()}
        tree = {**extra, **{name: r.metrics for name, r in results.items()}}
        tree["calibration"] = {"split": "test", **results["test"].bins}
        return tree, results

    blocks = {}
    blocks["calibration"], det = block(0)
    if ev.mc_samples == 0:
        return blocks, None
    blocks["mc"], mc = block(ev.mc_samples, samples=ev.mc_samples)
    det_test = det["test"].metrics
    rows = [{"samples": t, "mc_acc": a, "mc_nll": n, "det_acc": det_test["acc"], "det_nll": det_test["nll"]}
            for t, (a, n) in enumerate(zip(*mc["test"].curve, strict=True), start=1)]
    return blocks, rows
