"""Cold start of one side in a fresh process: imports, weight loading, and the first result.

    python -m benchmarks.cold {mlx|torch} MODEL IMAGE [--dtype D] [--torch-device D]

Prints JSON: import_s, load_s (to "first result possible"), first_result_s (the first OCR,
i.e. warm-up: lazy initialization included).
"""

import time

_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold")
    parser.add_argument("side", choices=["mlx", "torch"])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--torch-device", default="auto")
    args = parser.parse_args(argv)

    from PIL import Image

    if args.side == "mlx":
        import mlx_mangaocr  # noqa: F401

        from .sides import MlxSide as Side

        side = Side(args.model, args.dtype)
    else:
        import transformers  # noqa: F401

        from .sides import TorchSide as Side

        side = Side(args.model, args.torch_device)
    imported = time.perf_counter()
    side.load()
    loaded = time.perf_counter()
    image = Image.open(args.image)
    settings = {"num_beams": 1}
    side.text(side.generate(side.preprocess([image]), settings)[0])
    first = time.perf_counter()
    print(json.dumps({"import_s": imported - _START, "load_s": loaded - imported, "first_result_s": first - loaded}))


if __name__ == "__main__":
    main()
