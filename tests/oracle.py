"""What upstream manga-ocr and transformers give, computed the way they compute it."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch
from PIL import Image
from transformers import BertJapaneseTokenizer, ViTImageProcessorPil

from testing.reference import trim
from testing.upstream import post_process as upstream_post_process


def pixel_values(folder, image) -> torch.Tensor:
    """Upstream preprocessing: L -> RGB, then transformers' ViT image processor (PIL backend)."""
    processor = ViTImageProcessorPil.from_pretrained(folder)
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    image = image.convert("L").convert("RGB")
    return processor(image, return_tensors="pt").pixel_values


def generated_images():
    """Images of awkward sizes and modes, made here (name, PIL image)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(97, 31, 3), dtype=np.uint8)
    yield "rgb-noise-tall", Image.fromarray(noise)
    yield "rgba", Image.fromarray(rng.integers(0, 256, size=(40, 300, 4), dtype=np.uint8), mode="RGBA")
    yield "gray-1x1", Image.fromarray(np.array([[200]], dtype=np.uint8), mode="L")
    yield "wide-1x500", Image.fromarray(rng.integers(0, 256, size=(1, 500), dtype=np.uint8), mode="L")
    yield "palette", Image.fromarray(noise).convert("P")
    yield "bilevel", Image.fromarray(noise).convert("1")
    yield "exact-224", Image.fromarray(rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8))
    yield "upscale-10x12", Image.fromarray(rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8))


def hf_generate(model, pixels: torch.Tensor, **kwargs) -> list[list[int]]:
    with torch.no_grad():
        out = model.generate(pixels, **kwargs)
    return [trim(row, model.generation_config.eos_token_id) for row in out.tolist()]


def tokenizer(folder) -> BertJapaneseTokenizer:
    return BertJapaneseTokenizer.from_pretrained(folder)


def upstream_text(tok: BertJapaneseTokenizer, ids: list[int]) -> str:
    return upstream_post_process(tok.decode(ids, skip_special_tokens=True))


class TorchStepper:
    """Drives this library's search code with transformers' logits (and transformers' cache), so
    that the search logic is compared with ``generate`` free of any floating-point difference."""

    def __init__(self, model, pixels: torch.Tensor, copies: int = 1):
        self.model = model
        with torch.no_grad():
            hidden = model.encoder(pixels).last_hidden_state
        self.hidden = hidden.repeat_interleave(copies, dim=0)
        self.rows = self.hidden.shape[0]
        self.past = None

    def __call__(self, tokens: np.ndarray) -> mx.array:
        with torch.no_grad():
            out = self.model.decoder(
                input_ids=torch.from_numpy(np.asarray(tokens, dtype=np.int64)).view(-1, 1),
                encoder_hidden_states=self.hidden,
                past_key_values=self.past,
                use_cache=True,
            )
        self.past = out.past_key_values
        return mx.array(out.logits[:, -1].float().numpy())

    def reorder(self, rows: np.ndarray) -> None:
        self.past.reorder_cache(torch.from_numpy(np.asarray(rows, dtype=np.int64)))


# fp32 tolerances. MLX and PyTorch evaluate the same float32 sums in different orders (and MLX's CPU
# paths use polynomial exp/erf within 2-4 ulps), so each side's error against a float64 evaluation of
# the same model is of the same size, and which one is larger depends on the CPU's kernels (AVX-512 or
# AVX2, MKL or OpenBLAS blocking), not on the code. So MLX's error is bounded by a small multiple of
# PyTorch's own error on the same inputs, measured in the same run, never by a number one machine
# printed. The floor (one ulp of the largest value) keeps a bound from collapsing where PyTorch's
# error happens to be ~0. A wrong layer, mask, scale or bias errs by 1e-2 to 1, far outside.
U = 2.0**-24  # float32 unit roundoff
RATIO = 4.0


def fp32_bound(theirs32: np.ndarray, ref64: np.ndarray) -> float:
    """The largest error an fp32 implementation may make here: RATIO x PyTorch's own max error
    against the float64 reference, floored at one float32 ulp of the largest magnitude."""
    ref64 = np.asarray(ref64, dtype=np.float64)
    torch_error = float(np.abs(np.asarray(theirs32, dtype=np.float64) - ref64).max())
    return RATIO * max(torch_error, 2 * U * float(np.abs(ref64).max()))


def assert_fp32_close(ours, theirs32, ref64, what: str = "") -> float:
    """Assert MLX's max error against float64 is within ``fp32_bound``; return it as a fraction of
    PyTorch's own max error (the figure the tests record)."""
    ref64 = np.asarray(ref64, dtype=np.float64)
    ours_error = float(np.abs(np.asarray(ours, dtype=np.float64) - ref64).max())
    torch_error = float(np.abs(np.asarray(theirs32, dtype=np.float64) - ref64).max())
    bound = fp32_bound(theirs32, ref64)
    assert ours_error <= bound, f"{what}: MLX error {ours_error:.3g} > {bound:.3g} (PyTorch's {torch_error:.3g})"
    return ours_error / max(torch_error, 1e-300)


# Parity figures measured by the tests, printed at the end of the run (see conftest.py).
FIGURES: dict[str, str] = {}


def record(name: str, value) -> None:
    FIGURES[name] = f"{value:.3g}" if isinstance(value, float) else str(value)
