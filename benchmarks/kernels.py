"""The encoder's element-wise transcendental work (GELU's erf, the attention softmax's exp), timed
alone at the encoder's shapes for one image, in a process of its own:

    python -m benchmarks.kernels {mlx|torch} [--config MODEL_FOLDER] --out kernels.json

MLX is timed twice: with its own kernels (``nn.gelu``, ``mx.fast.scaled_dot_product_attention``)
and with the library's CPU paths (``layers.gelu``, ``layers.attention``). Totals are per image
(times the number of encoder layers), to set against the encoder's time in the main run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from testing.reference import pick_device

from .sides import sync, timed


def _time(fn, sync, runs: int = 20) -> float:
    """The median of ``runs`` timings of ``sync(fn())``, after 3 warm-ups."""
    for _ in range(3):
        sync(fn())
    return statistics.median(timed(lambda: sync(fn()))[1] for _ in range(runs))


def shapes(config_folder: str | None) -> dict:
    vision = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "image_size": 224,
        "patch_size": 16,
    }  # fmt: skip  (ViT-base/224: manga-ocr-base's encoder)
    if config_folder:
        vision.update(json.loads((Path(config_folder) / "config.json").read_text())["encoder"])
    tokens = (vision["image_size"] // vision["patch_size"]) ** 2 + 1
    heads = vision["num_attention_heads"]
    return {
        "layers": vision["num_hidden_layers"],
        "gelu": (1, tokens, vision["intermediate_size"]),
        "qkv": (1, heads, tokens, vision["hidden_size"] // heads),
    }


def run_mlx(s: dict) -> dict:
    from mlx_mangaocr.models import layers
    import mlx.core as mx  # isort: skip
    import mlx.nn as nn

    x = mx.random.normal(s["gelu"])
    q, k, v = (mx.random.normal(s["qkv"]) for _ in range(3))
    scale = s["qkv"][-1] ** -0.5
    mx.eval(x, q, k, v)
    return {
        "gelu_mlx_kernel_s": _time(lambda: nn.gelu(x), mx.eval),
        "gelu_library_s": _time(lambda: layers.gelu(x), mx.eval),
        "attention_mlx_kernel_s": _time(lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale), mx.eval),
        "attention_library_s": _time(lambda: layers.attention(q, k, v, scale), mx.eval),
        "attention_matmuls_only_s": _time(lambda: ((q * scale) @ k.swapaxes(-1, -2)) @ v, mx.eval),
    }


def run_torch(s: dict, device: str = "auto") -> dict:
    import torch
    import torch.nn.functional as F

    device = pick_device(device)
    x = torch.randn(s["gelu"], device=device)
    q, k, v = (torch.randn(s["qkv"], device=device) for _ in range(3))
    scale = s["qkv"][-1] ** -0.5

    def wait(_):
        sync(torch, device)

    with torch.no_grad():
        return {
            "gelu_s": _time(lambda: F.gelu(x), wait),
            "attention_s": _time(lambda: F.scaled_dot_product_attention(q, k, v, scale=scale), wait),
            "threads": torch.get_num_threads(),
            "device": device,
        }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels")
    parser.add_argument("side", choices=["mlx", "torch"])
    parser.add_argument("--config", help="model folder whose config.json gives the encoder's shapes")
    parser.add_argument("--out", required=True)
    parser.add_argument("--torch-device", default="auto")
    args = parser.parse_args(argv)
    s = shapes(args.config)
    per_layer = run_mlx(s) if args.side == "mlx" else run_torch(s, args.torch_device)
    result = {
        "shapes": s,
        "per_layer": per_layer,
        "per_image": {k: v * s["layers"] for k, v in per_layer.items() if k.endswith("_s")},
    }
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
