"""Where the detector's time and memory go, stage by stage, on one side, in a process of its own.

    python -m benchmarks.detector_stages {mlx|torch} --model M [--batch-size B] [--repeats N] --out F

The stages are those of RT-DETR-v2's forward: the backbone, the hybrid encoder in three parts (its
input projections, 1x1 convolutions; AIFI, the transformer layer on the coarsest map; the fusion,
CCFM's convolutions), query selection (the decoder's input projections, anchors, the encoder's
heads and the top-k), the deformable decoder (its heads included), and post-processing. PyTorch runs
transformers' own forward, timed by hooks on its submodules (a CPU runs it synchronously); MLX runs
the same stages with an evaluation after each. Memory per stage is the process's peak RSS during it
above the RSS before the forward (Linux's VmHWM, reset through ``/proc/self/clear_refs``), so both
sides are measured by the same rule (on Linux; elsewhere only times are taken); MLX adds its
allocator's own figures (peak, pool of freed buffers). Each stage also counts the minor page faults
the process took during it (``getrusage``): memory new to the process faults in page by page, and
on a machine where a fault is dear that decides the time of stages with large intermediates. Random
pixels at the preprocessor's size are the input: the stages do not look at them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

from .sides import hwm_bytes, rss_bytes

STAGES = ("backbone", "encoder input projections", "encoder AIFI", "encoder fusion", "query selection", "decoder",
          "post-processing")  # fmt: skip


LINUX = Path("/proc/self/clear_refs").exists()


def _hwm_bytes() -> int:
    return (hwm_bytes() or 0) if LINUX else 0


def _reset_hwm() -> None:
    if LINUX:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _page_faults() -> int:
    """Minor page faults of the whole process so far (all its threads, MLX's stream threads too)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _Meter:
    """Time, peak RSS (above ``base``) and minor page faults per stage of one forward; ``sync``
    waits for the device."""

    def __init__(self, base: int, sync=lambda: None):
        self.base, self.seconds, self.peak, self.faults, self.sync = base, {}, {}, {}, sync
        self._stage, self._t, self._f = None, 0.0, 0

    def start(self, stage: str) -> None:
        self.sync()
        _reset_hwm()
        self._stage, self._f, self._t = stage, _page_faults(), time.perf_counter()

    def stop(self) -> None:
        self.sync()
        self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + time.perf_counter() - self._t
        self.faults[self._stage] = self.faults.get(self._stage, 0) + _page_faults() - self._f
        self.peak[self._stage] = max(self.peak.get(self._stage, 0), _hwm_bytes() - self.base)


def _mlx_forward(detector, pixels, threshold: float, meter: _Meter) -> dict:
    import mlx.core as mx
    import numpy as np

    from mlx_mangaocr.models.detection.postprocess import detections

    model, extra = detector.model, {}

    def stage(name, fn):
        mx.reset_peak_memory()
        before = mx.get_active_memory()
        meter.start(name)
        out = fn()
        mx.eval(out)
        meter.stop()
        extra[name] = {"mlx_peak_above_live_bytes": mx.get_peak_memory() - before, "pool_bytes": mx.get_cache_memory()}
        return out

    x = mx.array(pixels)
    held = {"maps": stage("backbone", lambda: model.backbone(x))}
    projections = zip(model.encoder_input_proj, held.pop("maps"), strict=True)
    held["projected"] = stage("encoder input projections", lambda: [proj(m) for proj, m in projections])
    held["attended"] = stage("encoder AIFI", lambda: model.encoder.attend(held.pop("projected")))
    held["encoded"] = stage("encoder fusion", lambda: model.encoder.fuse(held.pop("attended")))

    def select():
        held["selected"] = chosen = model.select_queries(held.pop("encoded"))
        return [chosen.target, chosen.memory, chosen.ref_logits]

    stage("query selection", select)
    chosen = held.pop("selected")
    logits, boxes = stage("decoder", lambda: list(model.decoder(chosen.target, chosen.memory, chosen.shapes,
                                                                chosen.ref_logits)))  # fmt: skip
    meter.start("post-processing")
    logits, boxes = np.array(logits), np.array(boxes)
    labels = detector.config.id2label
    size = tuple(pixels.shape[1:3])
    found = [detections(logits[i], boxes[i], size, threshold, labels) for i in range(len(logits))]
    meter.stop()
    return {"detections": sum(len(f) for f in found), "mlx": extra}


def _torch_forward(side, pixels, threshold: float, meter: _Meter) -> dict:
    import torch

    inner = side.net.model

    def switch(to):
        def hook(*_):
            if to != "backbone":
                meter.stop()
            meter.start(to)

        return hook

    # encoder_input_proj runs between the backbone and the encoder; the encoder runs AIFI first (its
    # position embedding included), then the fusion; query selection is what runs between the encoder
    # and the decoder
    aifi = inner.encoder.aifi
    fusion = aifi[-1].register_forward_hook if len(aifi) else inner.encoder.lateral_convs[0].register_forward_pre_hook
    handles = [
        inner.backbone.register_forward_pre_hook(switch("backbone")),
        inner.backbone.register_forward_hook(switch("encoder input projections")),
        inner.encoder.register_forward_pre_hook(switch("encoder AIFI")),
        fusion(switch("encoder fusion")),
        inner.encoder.register_forward_hook(switch("query selection")),
        inner.decoder.register_forward_pre_hook(switch("decoder")),
    ]
    try:
        with torch.no_grad():
            out = side.net(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(side.device))
        meter.stop()  # the decoder's stage ends with the detection heads
    finally:
        for h in handles:
            h.remove()
    meter.start("post-processing")
    sizes = [tuple(pixels.shape[1:3])] * len(pixels)
    found = side.processor.post_process_object_detection(out, threshold=threshold, target_sizes=sizes)
    meter.stop()
    return {"detections": sum(len(r["scores"]) for r in found)}


def run(args) -> dict:
    import numpy as np

    if args.side == "mlx":
        import mlx_mangaocr  # first: it loads OpenBLAS, which must come before mlx.core  # noqa: I001

        side = mlx_mangaocr.load_detector(args.model)
        if args.buffer_pool_mb is not None:
            import mlx.core as mx

            mx.set_cache_limit(args.buffer_pool_mb * 2**20)
        forward = _mlx_forward
    else:
        from testing.reference import TorchDetector

        side = TorchDetector(args.torch_device)
        side.load(args.model)
        forward = _torch_forward
    sync = side.sync if args.side == "torch" else lambda: None  # MLX's stages end with mx.eval
    height = width = args.size
    config = Path(args.model) / "preprocessor_config.json"
    if config.is_file():  # the size the image processor resizes every page to
        size = json.loads(config.read_text(encoding="utf-8")).get("size", {})
        height, width = size.get("height", height), size.get("width", width)
    pixels = np.random.default_rng(0).random((args.batch_size, height, width, 3), dtype=np.float32)
    runs = []
    for _ in range(args.repeats + 1):  # the first is a warm-up, kept apart
        base = rss_bytes()
        meter = _Meter(base or 0, sync)
        info = forward(side, pixels, args.threshold, meter)
        runs.append({"seconds": meter.seconds, "peak_above_start_bytes": meter.peak, "page_faults": meter.faults,
                     **info})  # fmt: skip
    measured = runs[1:]
    from .sides import facts

    return {
        "facts": facts(args.side, getattr(side, "device", None)),
        "memory_measured": LINUX,
        "side": args.side,
        "batch_size": args.batch_size,
        "input": [height, width],
        "warm_up": runs[0],
        "runs": measured,
        "median_seconds": {s: statistics.median(r["seconds"][s] for r in measured) for s in STAGES},
        "max_peak_above_start_bytes": {s: max(r["peak_above_start_bytes"][s] for r in measured) for s in STAGES},
        "median_page_faults": {s: statistics.median(r["page_faults"][s] for r in measured) for s in STAGES},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detector_stages")
    parser.add_argument("side", choices=["mlx", "torch"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--size",
        type=int,
        default=640,
        help="the input's side where the model folder's preprocessor_config.json does not give it",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--buffer-pool-mb", type=int, default=None, help="MLX only: mx.set_cache_limit")
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = run(args)
    Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    for s in STAGES:
        print(f"{args.side} b{args.batch_size} {s:25s} {results['median_seconds'][s] * 1000:8.1f} ms "
              f"{results['max_peak_above_start_bytes'][s] / 2**20:7.0f} MiB "
              f"{results['median_page_faults'][s]:9.0f} page faults")  # fmt: skip


if __name__ == "__main__":
    main()
