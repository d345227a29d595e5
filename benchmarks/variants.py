"""One converted MLX model variant (fp32, fp16, bf16, quantized) on the images, in its own process.

    python -m benchmarks.variants MODEL_FOLDER --images F... --decoding beam --out variant.json

Per image: preprocessing, the encoder and decoding are timed once each (the encoder runs once:
half-precision and quantized matmuls are slow fallbacks on MLX's CPU backend). Records the size of
the folder on disk, the ids and the final text, so the orchestrator can compare them with fp32.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

from .measure import summary
from .sides import MODES


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(model: str, image_paths: list[str], mode: str) -> dict:
    from mlx_mangaocr import load_mlx_processor
    import mlx.core as mx  # isort: skip

    from mlx_mangaocr.engine.steppers import generate

    processor = load_mlx_processor(model)
    settings = processor.generation_config.updated(**MODES[mode])
    images = [Image.open(p).copy() for p in image_paths]

    def decode(hidden):
        return generate(processor.model, hidden, settings, compile_step=processor.compile_step)

    decode(processor.model.encode(processor.pixels(images[:1])))  # warm-up, as timed below (traces the step)
    per_image, times = {}, {"preprocess_s": [], "encoder_s": [], "decode_s": [], "end_to_end_s": []}
    tokens = 0
    for path, image in zip(image_paths, images, strict=True):
        start = time.perf_counter()
        pixels = processor.pixels([image])
        mx.eval(pixels)
        t_pre = time.perf_counter()
        hidden = processor.model.encode(pixels)
        mx.eval(hidden)
        t_enc = time.perf_counter()
        ids = decode(hidden)[0]
        t_dec = time.perf_counter()
        text = processor.decode(ids)
        t_end = time.perf_counter()
        for key, value in (("preprocess_s", t_pre - start), ("encoder_s", t_enc - t_pre),
                           ("decode_s", t_dec - t_enc), ("end_to_end_s", t_end - start)):  # fmt: skip
            times[key].append(value)
        tokens += len(ids) - 1
        per_image[Path(path).name] = {"ids": ids, "text": text}
    return {
        "model": model,
        "mode": mode,
        "dtype": str(processor.model.encoder.layernorm.weight.dtype),
        "quantization": processor.config.quantization,
        "size_on_disk_bytes": folder_bytes(Path(model)),
        "per_image": per_image,
        **{key: summary(values) for key, values in times.items()},
        "decode_per_step_s": sum(times["decode_s"]) / max(tokens, 1),
        "peak_memory_bytes": int(mx.get_peak_memory()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.variants")
    parser.add_argument("model")
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--decoding", choices=list(MODES), default="beam")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = run(args.model, args.images, args.decoding)
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
