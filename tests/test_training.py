"""Training equals transformers' training: the labels path, the loss, every gradient, and the
parameters after several optimizer steps against a PyTorch loop (``testing/torch_training.py``),
in float64 as the reference (``tests/oracle.py``'s bounds)."""

from __future__ import annotations

import copy
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten
from oracle import RATIO, U, assert_fp32_close, record
from transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder import shift_tokens_right

from mlx_mangaocr.loading.ocr import load_checkpoint
from mlx_mangaocr.models.layers import differentiable
from mlx_mangaocr.models.ocr.loss import IGNORE, label_array, loss_sum, shift_right, token_losses
from mlx_mangaocr.pipelines.training.optimizer import make_optimizer, schedule
from mlx_mangaocr.pipelines.training.step import Stepper, add
from testing import torch_training
from testing.synthetic import load_oracle

PAD, START = 0, 2


def batch(seed: int, rows: int, lengths=None, vocab: int = 6144):
    """Random pixels (NHWC) and [CLS] ... [SEP] labels padded with IGNORE."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-1, 1, (rows, 224, 224, 3)).astype(np.float32)
    lengths = lengths or [int(n) for n in rng.integers(1, 12, rows)]
    ids = [[2, *map(int, rng.integers(5, vocab, n)), 3] for n in lengths]
    return pixels, label_array(ids, PAD)


def our_names(model, tensors: dict) -> dict[str, np.ndarray]:
    """transformers' parameter names and layouts -> this library's (``sanitize``), in float64. MLX
    holds float32 only, so the values go through ``sanitize`` as two float32 parts (high and low),
    put together again: 48 bits kept, far finer than any fp32 error measured here."""
    high, low = {}, {}
    for name, value in tensors.items():
        v = value.detach().to(torch.float64).numpy()
        high[name] = v.astype(np.float32)
        low[name] = (v - high[name]).astype(np.float32)
    high, low = (
        model.sanitize({k: mx.array(v) for k, v in high.items()}),
        model.sanitize({k: mx.array(v) for k, v in low.items()}),
    )
    return {k: np.array(high[k]).astype(np.float64) + np.array(low[k]).astype(np.float64) for k in high}


def mlx_loss_and_grads(model, pixels, labels):
    tokens = int((labels != IGNORE).sum())

    def mean_loss(m):
        return loss_sum(m, mx.array(pixels), mx.array(shift_right(labels, PAD, START)), mx.array(labels)) / tokens

    with differentiable():
        loss, grads = nn.value_and_grad(model, mean_loss)(model)
    return loss.item(), {k: np.array(v) for k, v in tree_flatten(grads)}


def torch_loss_and_grads(hf, pixels, labels):
    hf.zero_grad(set_to_none=True)
    dtype = next(hf.parameters()).dtype
    out = hf(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()).to(dtype),
             labels=torch.from_numpy(labels.astype(np.int64)))  # fmt: skip
    out.loss.backward()
    return float(out.loss), {n: p.grad for n, p in hf.named_parameters() if p.grad is not None}


def test_decoder_input_is_transformers_labels_path(tiny):
    """[CLS] [CLS] t1 ... tn behind the labels [CLS] t1 ... tn [SEP]: what transformers builds from
    ``labels``, and the logits it gives at every position."""
    _, labels = batch(1, 3, [4, 9, 1])
    ours = shift_right(labels, PAD, START)
    theirs = shift_tokens_right(torch.from_numpy(labels.astype(np.int64)), PAD, START).numpy()
    assert (ours == theirs).all()
    assert (ours[:, :2] == START).all() and (labels[:, 0] == START).all()
    assert labels[0].tolist()[:6] == [2, *labels[0, 1:5].tolist(), 3]


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_loss_and_every_gradient_equal_pytorch(size, request):
    built = request.getfixturevalue(size)
    rows = 3 if size == "tiny" else 2
    pixels, labels = batch(2, rows)
    model = load_checkpoint(built.folder).model
    loss, grads = mlx_loss_and_grads(model, pixels, labels)
    hf32 = load_oracle(built.folder)
    hf64 = copy.deepcopy(hf32).double()
    loss32, g32 = torch_loss_and_grads(hf32, pixels, labels)
    loss64, g64 = torch_loss_and_grads(hf64, pixels, labels)
    record(f"training {size}: loss error / PyTorch's", assert_fp32_close([loss], [loss32], [loss64], "loss"))
    # the summed-token form equals transformers' mean too
    logits = model(mx.array(pixels), mx.array(shift_right(labels, PAD, START)))
    total, count = token_losses(logits, mx.array(labels))
    assert count.item() == int((labels != IGNORE).sum())
    assert abs(total.item() / count.item() - loss64) <= abs(loss32 - loss64) * RATIO + 4 * U * abs(loss64) * 10
    t32, t64 = our_names(model, g32), our_names(model, g64)
    assert set(grads) == set(t64), set(grads) ^ set(t64)
    worst = assert_gradients_close(grads, t32, t64)
    record(f"training {size}: worst relative gradient error / PyTorch's worst", worst)


def _relative(a, ref) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def gradient_bound(theirs32: dict, ref64: dict, name: str) -> float:
    """The largest error an fp32 gradient of ``name`` may have (see ``assert_gradients_close``)."""
    torch_worst = max(_relative(theirs32[n], ref64[n]) for n in ref64)
    ref = ref64[name]
    scale = float(np.abs(ref).max())
    return RATIO * max(float(np.abs(theirs32[name] - ref).max()), torch_worst * scale, 2 * U * scale)


def assert_gradients_close(ours: dict, theirs32: dict, ref64: dict) -> float:
    """Every tensor's gradient within fp32 bounds of the float64 one. A gradient's fp32 error grows
    with the backward pass's conditioning, which differs by tensor, and MLX and PyTorch order their
    sums differently, so one tensor's error may be several times the other's. The bound: each
    tensor's error, relative to its largest magnitude, at most RATIO x the largest relative error
    PyTorch makes on any tensor of the same model and batch (or RATIO x PyTorch's own error on it).
    A wrong term, mask or scale errs by 1e-2 to 1 relative, far outside. Returns MLX's worst
    relative error as a fraction of PyTorch's worst."""
    torch_worst = max(_relative(theirs32[n], ref64[n]) for n in ref64)
    ours_worst = 0.0
    for name, ref in ref64.items():
        scale = np.abs(ref).max()
        error = float(np.abs(np.asarray(ours[name], np.float64) - ref).max())
        torch_error = float(np.abs(np.asarray(theirs32[name], np.float64) - ref).max())
        bound = gradient_bound(theirs32, ref64, name)
        assert error <= bound, f"{name}: MLX error {error:.3g} > {bound:.3g} (PyTorch's {torch_error:.3g})"
        ours_worst = max(ours_worst, error / max(scale, 1e-30))
    return ours_worst / torch_worst if torch_worst else ours_worst


def _steps(seed: int, count: int, rows: int, micro: int = 1):
    out = []
    for s in range(count):
        pixels, labels = batch(seed + s, rows)
        step = rows // micro
        out.append([(pixels[i : i + step], labels[i : i + step]) for i in range(0, rows, step)])
    return out


def _mlx_loop(model, steps, optimizer="adamw", lr=5e-5, kind="linear", warmup=0, total=None, weight_decay=0.0,
              max_grad_norm=1.0):  # fmt: skip
    opt = make_optimizer(optimizer, schedule(lr, kind, warmup, total or len(steps)), weight_decay)
    opt.init(model.trainable_parameters())
    stepper = Stepper(model, opt, max_grad_norm)
    for micro in steps:
        tokens = int(sum((labels != IGNORE).sum() for _, labels in micro))
        grads = None
        for pixels, labels in micro:
            _, g = stepper.gradients(pixels, shift_right(labels, PAD, START), labels, tokens)
            grads = add(g, grads)
        stepper.update(grads)
        mx.eval(model.parameters(), opt.state)
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


def adam_bound(lrs, grads64, grad_errors, params64) -> np.ndarray:
    """How far an fp32 Adam run may be from the float64 one, per element.

    Adam's step is lr * u with u = m_hat / (sqrt(v_hat) + eps), m_hat and v_hat weighted means of
    g_k and g_k^2 over steps k <= t (weights summing to 1, each at least about 1/t over the first
    steps, so sqrt(v_hat) >= G / sqrt(t) with G = max_k |g_k|, and |m_hat| <= 1.01 sqrt(v_hat)).
    A gradient error of at most e (every step so far) moves m_hat by e and v_hat by 2 G e, so u by
    at most e / sqrt(v_hat) + |m_hat| G e / v_hat <= (sqrt(t) + 1.01 t) e / G; and never by more
    than 2.02 (a flipped sign, where |g| is within e of 0: Adam turns noise into +-lr). Plus the
    rounding of the parameter at each step (2 ulp). ``grad_errors``: each step's gradient bound for
    the tensor (``gradient_bound``)."""
    bound = np.zeros_like(params64)
    largest = np.zeros_like(params64)
    error = 0.0
    for t, (lr, g, e) in enumerate(zip(lrs, grads64, grad_errors, strict=True), start=1):
        largest = np.maximum(largest, np.abs(g))
        error = max(error, e)
        with np.errstate(divide="ignore", invalid="ignore"):
            moved = np.where(largest > 0, (math.sqrt(t) + 1.01 * t) * error / largest, 0.0)
        bound += lr * np.minimum(2.02, moved)
    return bound + 2 * len(lrs) * 2 * U * np.abs(params64) + 1e-12


CASES = {
    "adamw": dict(optimizer="adamw"),
    "adamw-warmup-decay": dict(optimizer="adamw", warmup=2, weight_decay=0.01),
    "adam-l2": dict(optimizer="adam", weight_decay=0.01, kind="cosine"),
    "sgd-clipped": dict(optimizer="sgd", lr=0.5, max_grad_norm=0.05, kind="constant", warmup=1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parameters_after_steps_equal_a_pytorch_loop(case, tiny):
    """Updates of one batch in two micro-batches each (gradient accumulation), clipped, against
    transformers' schedule, torch.optim and clip_grad_norm_ in float64.

    - After the first update every element is within its bound: ``fp32_bound`` for SGD (linear in
      the gradient), ``adam_bound`` for Adam (where a near-zero gradient's noise becomes +-lr).
    - After three updates, SGD's elements are still within ``fp32_bound``. Adam's flipped noise of
      one step moves the next gradients (a parameter moved by 2 lr is far outside fp32 noise), so
      no per-element bound holds across steps; the check is norm-wise over the whole model: the
      error relative to how far the parameters moved is at most RATIO x PyTorch fp32's own. A wrong
      sign, rate, schedule step, bias correction or decay errs by ~1 relative, far outside.
    """
    options = dict(CASES[case])
    torch_options = {"optimizer": options.get("optimizer", "adamw"), "lr": options.get("lr", 5e-5),
                     "schedule": options.get("kind", "linear"), "warmup": options.get("warmup", 0),
                     "weight_decay": options.get("weight_decay", 0.0),
                     "max_grad_norm": options.get("max_grad_norm", 1.0)}  # fmt: skip
    adam = torch_options["optimizer"] != "sgd"
    start = {k: np.array(v) for k, v in tree_flatten(load_checkpoint(tiny.folder).model.parameters())}
    for count in (1, 3):
        steps = _steps(10, count, 4, micro=2)
        model = load_checkpoint(tiny.folder).model
        ours = _mlx_loop(model, steps, total=3, **options)
        hf32 = load_oracle(tiny.folder)
        hf64 = copy.deepcopy(hf32).double()
        _, grads32 = torch_training.train_loop(hf32, steps, record_grads=True, total=3, **torch_options)
        _, grads64 = torch_training.train_loop(hf64, steps, record_grads=True, total=3, **torch_options)
        p32, p64 = our_names(model, dict(hf32.named_parameters())), our_names(model, dict(hf64.named_parameters()))
        assert set(ours) == set(p64)
        if adam and count == 3:
            ours_rel, torch_rel = _moved_error(ours, p64, start), _moved_error(p32, p64, start)
            assert ours_rel <= RATIO * torch_rel + 1e-6, f"relative error {ours_rel:.3g}, PyTorch's {torch_rel:.3g}"
            record(f"training {case}: 3 updates, error / movement (PyTorch's)", f"{ours_rel:.3g} ({torch_rel:.3g})")
            continue
        lrs = [torch_options["lr"] * _factor(torch_options, k, 3) for k in range(count)]
        g32 = [our_names(model, g) for g in grads32]
        g64 = [our_names(model, g) for g in grads64]
        worst = 0.0
        for name in ours:
            if not adam:
                continue
            err = np.abs(ours[name].astype(np.float64) - p64[name])
            errors = [gradient_bound(a, b, name) for a, b in zip(g32, g64, strict=True)]
            bound = adam_bound(lrs, [g[name] for g in g64], errors, p64[name])
            assert (err <= bound).all(), f"{name}: error {err.max():.3g} above its bound"
            worst = max(worst, float((err / bound).max()))
        if not adam:
            worst = assert_updates_close(ours, p32, p64, start)
        what = "worst relative error / PyTorch's worst" if not adam else "worst error / bound"
        record(f"training {case}: {count} update(s), {what}", worst)
        if torch_options["warmup"] and count == 1:  # the first update's learning rate is 0
            assert all((ours[k] == start[k]).all() for k in ours)


def assert_updates_close(ours: dict, theirs32: dict, ref64: dict, start: dict) -> float:
    """SGD's parameters after some updates: what moved is lr x the sum of the gradients, so each
    tensor's error is bounded as its gradients' are (``gradient_bound``), relative to how far the
    tensor moved. Returns MLX's worst relative error as a fraction of PyTorch's worst."""
    moved64 = {n: ref64[n] - start[n].astype(np.float64) for n in ref64}
    moved32 = {n: theirs32[n].astype(np.float64) - start[n] for n in ref64}
    moved = {n: ours[n].astype(np.float64) - start[n] for n in ref64}
    return assert_gradients_close(moved, moved32, moved64)


def _moved_error(params: dict, ref64: dict, start: dict) -> float:
    """||params - ref|| / ||ref - start|| over every parameter of the model."""
    error = sum(float(((params[k].astype(np.float64) - ref64[k]) ** 2).sum()) for k in ref64)
    moved = sum(float(((ref64[k] - start[k].astype(np.float64)) ** 2).sum()) for k in ref64)
    return math.sqrt(error / moved)


def _factor(options, step, total):
    warmup, kind = options["warmup"], options["schedule"]
    if step < warmup:
        return step / max(1, warmup)
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if kind == "cosine":
        return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))
    return 1.0


def test_accumulated_micro_batches_give_the_update_of_the_whole_batch(tiny):
    """K micro-batches: the gradient of the whole batch's token mean, not the mean of the
    micro-batches' means (their token counts differ). The accumulated gradients are held to the
    whole batch's float64 PyTorch gradients with ``assert_gradients_close``'s bound, as one batch's."""
    pixels, labels = batch(5, 4, [1, 10, 3, 7])
    model = load_checkpoint(tiny.folder).model
    opt = make_optimizer("sgd", 0.0)
    stepper = Stepper(model, opt, 0.0)
    tokens = int((labels != IGNORE).sum())
    grads = None
    for part in (slice(0, 1), slice(1, 4)):
        sub = labels[part][:, : max(2, int((labels[part] != IGNORE).sum(1).max()))]
        _, g = stepper.gradients(pixels[part], shift_right(sub, PAD, START), sub, tokens)
        grads = add(g, grads)
    accumulated = {k: np.array(v) for k, v in tree_flatten(grads)}
    hf32 = load_oracle(tiny.folder)
    hf64 = copy.deepcopy(hf32).double()
    _, g32 = torch_loss_and_grads(hf32, pixels, labels)
    _, g64 = torch_loss_and_grads(hf64, pixels, labels)
    t32, t64 = our_names(model, g32), our_names(model, g64)
    worst = assert_gradients_close(accumulated, t32, t64)
    record("training: 2 micro-batches accumulated vs the whole batch, worst relative error / PyTorch's", worst)
    # the mean of the two micro-batches' means is another update: the test tells them apart
    first = int((labels[:1] != IGNORE).sum())
    assert first != tokens - first
