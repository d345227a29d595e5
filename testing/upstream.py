"""What upstream manga-ocr does (manga_ocr/ocr.py), for the PyTorch side and for the tests."""

from __future__ import annotations

import re

import jaconv


def post_process(text: str) -> str:
    """manga_ocr/ocr.py's post_process, verbatim."""
    text = "".join(text.split())
    text = text.replace("…", "...")
    text = re.sub("[・.]{2,}", lambda x: (x.end() - x.start()) * ".", text)
    text = jaconv.h2z(text, ascii=True, digit=True)
    return text


def preprocess(processor, images):
    """manga-ocr's preprocessing: L -> RGB, then the ViT image processor; batched for throughput."""
    images = [img.convert("L").convert("RGB") for img in images]
    return processor(images, return_tensors="pt").pixel_values


def load(model_path, device: str):
    """Model, tokenizer and image processor as manga-ocr loads them (PIL image backend)."""
    from transformers import AutoTokenizer, VisionEncoderDecoderModel, ViTImageProcessorPil

    processor = ViTImageProcessorPil.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = VisionEncoderDecoderModel.from_pretrained(model_path).eval().to(device)
    return model, tokenizer, processor
