"""Random-weight comic text and bubble detectors in the real layout, built with transformers.

``ogkalu/comic-text-and-bubble-detector`` cannot be downloaded here (see ../shared/DETECTOR.md).
``RTDetrV2Config(num_labels=3)`` with transformers' defaults is its architecture (R50-vd, 42.9 M
parameters, 770 tensors on disk); a small configuration of the same shape keeps most tests fast.
BatchNorm statistics are calibrated on real crops and the affine parameters randomised, so that
folding them is really tested,
and the class and box heads get a spread so that scores cover (0, 1) and boxes leave their anchors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import RTDetrResNetConfig, RTDetrV2Config, RTDetrV2ForObjectDetection

LABELS = {0: "bubble", 1: "text_bubble", 2: "text_free"}


@dataclass(frozen=True)
class DetectorSpec:
    full: bool = False
    basic: bool = False  # an R18-like "basic" backbone, other layer counts, a 4th feature level
    options: bool = False  # the other config switches: discrete sampling, eval_size, pre-norm, fixed anchors
    seed: int = 0
    size: int = 640  # the preprocessor's square input size
    head_scale: float = 3.0  # class heads' weight scale (std head_scale / sqrt(d)): scores spread over (0, 1)


SMALL_DETECTOR = DetectorSpec(size=320)
BASIC_DETECTOR = DetectorSpec(basic=True, size=256, seed=3)
OPTIONS_DETECTOR = DetectorSpec(options=True, size=256, seed=5)
FULL_DETECTOR = DetectorSpec(full=True)


def detector_config(spec: DetectorSpec) -> RTDetrV2Config:
    labels = {"id2label": dict(LABELS), "label2id": {v: k for k, v in LABELS.items()}}
    if spec.full:
        return RTDetrV2Config(num_labels=3, **labels)
    if spec.basic:
        backbone = RTDetrResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32, 48, 64],
            depths=[2, 1, 1, 2],
            layer_type="basic",
            out_indices=[2, 3, 4],
        )
        more = {"encoder_layers": 2, "decoder_layers": 3, "num_feature_levels": 4, "decoder_n_levels": 4,
                "decoder_n_points": 3, "encoder_in_channels": [32, 48, 64]}  # fmt: skip
    else:
        backbone = RTDetrResNetConfig(
            embedding_size=16, hidden_sizes=[32, 64, 96, 128], depths=[1, 2, 1, 1], out_indices=[2, 3, 4]
        )
        more = {"decoder_layers": 2, "encoder_in_channels": [64, 96, 128]}
    if spec.options:
        more |= {"decoder_method": "discrete", "eval_size": spec.size, "normalize_before": True,
                 "anchor_image_size": [spec.size, spec.size]}  # fmt: skip
    return RTDetrV2Config(
        backbone_config=backbone,
        encoder_hidden_dim=32,
        encoder_ffn_dim=64,
        encoder_attention_heads=4,
        d_model=32,
        decoder_in_channels=[32, 32, 32],
        decoder_ffn_dim=64,
        decoder_attention_heads=4,
        num_queries=60,
        num_denoising=10,
        num_labels=3,
        **more,
        **labels,
    )


def build_detector(spec: DetectorSpec) -> RTDetrV2ForObjectDetection:
    torch.manual_seed(spec.seed)
    model = RTDetrV2ForObjectDetection(detector_config(spec)).eval()
    generator = torch.Generator().manual_seed(spec.seed + 1)

    def noise(like, scale):
        return torch.randn(like.shape, generator=generator) * scale

    with torch.no_grad():
        _calibrate_batch_norms(model, spec, generator)
        # transformers starts the score heads near zero and the box heads' last layer at zero, which
        # would make every token score alike and every box its anchor: give them a trained-like spread.
        d = model.config.d_model
        for head in [model.model.enc_score_head, *model.model.decoder.class_embed]:
            head.weight.copy_(noise(head.weight, spec.head_scale / d**0.5))
            head.bias.copy_(noise(head.bias, 1.0))
        for mlp in [model.model.enc_bbox_head, *model.model.decoder.bbox_embed]:
            mlp.layers[-1].weight.copy_(noise(mlp.layers[-1].weight, 0.5 / d**0.5))
            mlp.layers[-1].bias.copy_(noise(mlp.layers[-1].bias, 0.1))
        model.class_embed = model.model.decoder.class_embed  # tied, as transformers ties them
        model.bbox_embed = model.model.decoder.bbox_embed
    return model


def _calibrate_batch_norms(model, spec: DetectorSpec, generator) -> None:
    """Give every BatchNorm (nn.BatchNorm2d and transformers' frozen one) the statistics of what
    reaches it on real pages (the shared crops, tiled), with random affine parameters: as after
    training, activations keep their spatial contrast instead of collapsing onto the BN biases."""
    from PIL import Image

    from .synthetic import IMAGES

    page = Image.new("RGB", (spec.size, spec.size), "white")
    for i, path in enumerate(IMAGES):
        crop = Image.open(path).convert("RGB")
        crop.thumbnail((spec.size // 3, spec.size // 3))
        page.paste(crop, ((i % 4) * spec.size // 4, (i // 4) * spec.size // 4))
    pixels = torch.from_numpy(np.asarray(page, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    def calibrate(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3)) + 1e-3)
        module.weight.copy_(1 + torch.randn(module.weight.shape, generator=generator) * 0.1)
        module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)

    norms = [m for m in model.modules() if hasattr(m, "running_mean") and hasattr(m, "running_var")]
    hooks = [m.register_forward_pre_hook(calibrate) for m in norms]
    model(pixels)
    for hook in hooks:
        hook.remove()


def preprocessor_json(spec: DetectorSpec) -> dict:
    """The hub's preprocessor_config.json layout (RTDetrImageProcessor at the spec's size)."""
    return {
        "do_normalize": False,
        "do_pad": False,
        "do_rescale": True,
        "do_resize": True,
        "format": "coco_detection",
        "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "RTDetrImageProcessor",
        "image_std": [0.229, 0.224, 0.225],
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": spec.size, "width": spec.size},
    }


def write_detector(folder: Path, spec: DetectorSpec) -> RTDetrV2ForObjectDetection:
    """Save a seeded random detector as the hub has it: model.safetensors under transformers 4.49's
    names (transformers 5 writes those), config.json and preprocessor_config.json."""
    model = build_detector(spec)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor_json(spec), indent=2))
    return model


def load_detector_oracle(folder: Path):
    """transformers' detector and PIL image processor, loaded from the folder as users load them."""
    from transformers import RTDetrImageProcessorPil

    model = RTDetrV2ForObjectDetection.from_pretrained(folder).eval()
    return model, RTDetrImageProcessorPil.from_pretrained(folder)
