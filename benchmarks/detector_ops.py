"""Where AIFI and one decoder layer of the detector spend their time on MLX, operation by operation.

    python -m benchmarks.detector_ops --model MLX_DETECTOR [--repeats N] [--out F]

The detector's stages (``detector_stages.py``) show AIFI and the decoder as the stages furthest
from PyTorch's time. This breaks the decoder's first layer down at batch 1 on random pixels at the
preprocessor's size: self-attention (and a softmax of its scores by rows alone, through the library's
fused CPU exp and through ``mx.softmax``), the deformable attention's value projection (a matmul
PyTorch pays too), its sampling taps, the row gather and the weighted sum, and the FFN; AIFI
likewise (its projections, scores, a softmax by rows, weighted sum, FFN, activation and LayerNorm);
whether two MLX CPU streams run at once (they would split the single-threaded elementwise work over
two cores); and the library's CPU paths against MLX's own and against the layout they replaced
(attention cores by columns and by rows, row against column reductions). Median of
``--repeats`` evaluated calls after a warm-up each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _timed(fn, repeats: int) -> float:
    import mlx.core as mx

    mx.eval(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _aifi_ops(net, backbone_maps) -> dict:
    """AIFI, the encoder's transformer layer on the coarsest map, part by part (its input as the
    forward gives it: the projected last backbone map)."""
    import mlx.core as mx

    from mlx_mangaocr.models.detection.backbone import ACTIVATIONS
    from mlx_mangaocr.models.detection.encoder import sincos_position_embedding
    from mlx_mangaocr.models.layers import _softmax, split_heads

    level = net.encoder.encode_proj_layers[0]
    x = net.encoder_input_proj[level](backbone_maps[level])
    aifi = net.encoder.encoder[0]
    b, h, w, c = x.shape
    tokens = x.reshape(b, h * w, c)
    layer = aifi.layers[0]
    pos = sincos_position_embedding(h, w, c, aifi.temperature)
    attn = layer.self_attn
    qk = tokens + pos
    q, k, v = (split_heads(p(t), attn.heads) for p, t in ((attn.q_proj, qk), (attn.k_proj, qk), (attn.v_proj, tokens)))
    scores = (q * attn.scale) @ k.swapaxes(-1, -2)
    hidden = layer.fc1(tokens)
    mx.eval(x, tokens, pos, q, k, v, scores, hidden)
    gelu = ACTIVATIONS[layer.activation]
    return {
        f"AIFI ({h}x{w} map, {len(aifi.layers)} layer)": lambda: aifi(x),
        "  self-attention, residual and LayerNorm": lambda: layer.self_attn_layer_norm(tokens + attn(tokens, pos)),
        "  q, k, v projections (matmuls)": lambda: [
            p(t) for p, t in ((attn.q_proj, qk), (attn.k_proj, qk), (attn.v_proj, tokens))
        ],  # fmt: skip
        "  scores (batched matmul)": lambda: (q * attn.scale) @ k.swapaxes(-1, -2),
        "  softmax by rows, fused CPU exp": lambda: _softmax(scores),
        "  weighted sum of the values (batched matmul)": lambda: scores @ v,
        "  FFN linears (matmuls)": lambda: [layer.fc1(tokens), layer.fc2(hidden)],
        f"  {layer.activation}": lambda: gelu(hidden),
        "  one LayerNorm": lambda: layer.final_layer_norm(tokens),
    }


def run(model: str, repeats: int) -> dict:
    import mlx_mangaocr  # first: it loads OpenBLAS, which must come before mlx.core  # noqa: I001
    import mlx.core as mx
    import numpy as np

    from mlx_mangaocr.models.detection.decoder import sampling_taps
    from mlx_mangaocr.models.layers import _softmax

    detector = mlx_mangaocr.load_detector(model)
    net = detector.model
    size = {"height": 640, "width": 640}
    config = Path(model) / "preprocessor_config.json"
    if config.is_file():  # the size the image processor resizes every page to
        size = {**size, **json.loads(config.read_text(encoding="utf-8")).get("size", {})}
    pixels = mx.array(np.random.default_rng(0).random((1, size["height"], size["width"], 3), dtype=np.float32))
    backbone_maps = net.backbone(pixels)
    encoded = net.encode(backbone_maps)
    chosen = net.select_queries(encoded)
    mx.eval(chosen.target, chosen.memory, chosen.ref_logits)
    layer, memory, shapes = net.decoder.layers[0], chosen.memory, chosen.shapes
    h, ref = chosen.target, mx.sigmoid(chosen.ref_logits)
    pos = net.decoder.query_pos_head(ref)
    q = h + pos
    attn = layer.encoder_attn
    b, nq, d = q.shape
    heads, levels, points = attn.heads, attn.levels, attn.points
    head_dim = d // heads
    mx.eval(pos, q)

    def loc():
        offsets = attn.sampling_offsets(q).reshape(b, nq, heads, levels * points, 2)
        scale = mx.array([1 / points] * levels * points, dtype=q.dtype)[:, None]
        at = ref[:, :, None, None, :2] + offsets * scale * ref[:, :, None, None, 2:] * attn.offset_scale
        return at.transpose(0, 2, 1, 3, 4).reshape(b * heads, nq, levels, points, 2)

    where = loc()
    rows, taps = sampling_taps(where, shapes, attn.discrete)
    value = attn.value_proj(memory).reshape(b, -1, heads, head_dim).transpose(0, 2, 1, 3).reshape(-1, head_dim)
    k = rows.shape[2] * rows.shape[3] * rows.shape[4]
    flat = rows.reshape(b * heads, nq * k) + (mx.arange(b * heads, dtype=mx.int32) * (value.shape[0] // heads))[:, None]
    sampled = mx.take(value, flat.reshape(-1), axis=0).reshape(b * heads, nq, k, head_dim)
    weights = mx.random.uniform(shape=(b * heads, nq, 1, k))
    scores = mx.random.normal((1, heads, nq, nq))
    mx.eval(where, rows, taps, value, flat, sampled, weights, scores)
    ops = {
        "decoder (all layers and heads)": lambda: list(net.decoder(chosen.target, memory, shapes, chosen.ref_logits)),
        "layer: self-attention and its LayerNorm": lambda: layer.self_attn_layer_norm(h + layer.self_attn(h, pos)),
        "  softmax of its scores by rows, fused CPU exp": lambda: _softmax(scores),
        "  softmax of its scores, mx.softmax": lambda: mx.softmax(scores, axis=-1),
        "layer: deformable attention": lambda: attn(q, memory, shapes, ref),
        "  value projection (a matmul)": lambda: attn.value_proj(memory),
        "  sampling locations and attention weights": lambda: [
            loc(),
            _softmax(attn.attention_weights(q).reshape(b, nq, heads, levels * points)),
        ],
        "  sampling taps (rows and bilinear weights)": lambda: list(sampling_taps(where, shapes, attn.discrete)),
        "  row gather (mx.take)": lambda: mx.take(value, flat.reshape(-1), axis=0),
        "  weighted sum (batched matmul)": lambda: weights @ sampled,
        "layer: FFN and its LayerNorm": lambda: layer.final_layer_norm(h + layer.fc2(mx.maximum(layer.fc1(h), 0))),
    }
    ops.update(_aifi_ops(net, backbone_maps))
    seconds = {name: _timed(fn, repeats) for name, fn in ops.items()}
    gathered = {"rows": int(flat.size), "row_floats": head_dim}
    table, index = np.array(value), np.array(flat.reshape(-1))
    start = time.perf_counter()
    for _ in range(repeats):
        table[index]
    gathered["numpy_take_s"] = (time.perf_counter() - start) / repeats
    big = mx.random.normal((8, 300, 300))
    one, two = mx.new_stream(mx.cpu), mx.new_stream(mx.cpu)

    def split():
        with mx.stream(one):
            a = mx.exp(big[:4])
        with mx.stream(two):
            c = mx.exp(big[4:])
        return [a, c]

    streams = {"one_stream_s": _timed(lambda: mx.exp(big), repeats), "two_streams_s": _timed(split, repeats)}
    choices = {name: _timed(fn, repeats) for name, fn in _choices(net, memory, where, shapes, attn, big).items()}
    return {"model": model, "layers": len(net.decoder.layers), "seconds": seconds, "gather": gathered,
            "exp_720k": streams, "choices": choices}  # fmt: skip


def _choices(net, memory, where, shapes, attn, values) -> dict:
    """The library's CPU paths against MLX's own, at the detector's shapes: what each is worth.
    ``values``: 720k random scores, (8, 300, 300), as the decoder's self-attention makes them."""
    import mlx.core as mx
    import mlx.nn as nn

    from mlx_mangaocr.models.detection.decoder import sampling_taps
    from mlx_mangaocr.models.detection.encoder import sincos_position_embedding
    from mlx_mangaocr.models.layers import _exp_poly, _softmax, attention

    norm, aifi = net.enc_output[1], net.encoder.encoder[0]
    h, w = shapes[net.encoder.encode_proj_layers[0]]  # the map AIFI runs on
    exp, taps = mx.compile(_exp_poly), mx.compile(lambda at: sampling_taps(at, shapes, attn.discrete))
    heads, queries = attn.heads, where.shape[1]
    head_dim = net.config.d_model // heads
    scale = head_dim**-0.5
    # random queries, keys and values of the decoder's self-attention and of AIFI's (scores of a few units)
    dec, enc = (mx.random.normal((3, 1, heads, n, head_dim)) for n in (queries, h * w))
    lp = attn.levels * attn.points
    logits = mx.random.normal((1, queries, heads, lp))
    mx.eval(dec, enc, logits)

    def by_rows(qkv):  # the softmax along the rows, as before the column layout
        return _softmax((qkv[0] * scale) @ qkv[1].swapaxes(-1, -2)) @ qkv[2]

    return {
        "LayerNorm of the memory, MLX's own": lambda: nn.LayerNorm.__call__(norm, memory),
        "LayerNorm of the memory, the library's": lambda: norm(memory),
        "sampling taps, compiled (as the sampler runs them)": lambda: list(taps(where)),
        "AIFI position table, computed": lambda: sincos_position_embedding.__wrapped__(
            h, w, net.config.encoder_hidden_dim, aifi.temperature
        ),
        "exp of 720k values, the compiled polynomial, one stream": lambda: exp(values),
        "decoder self-attention core, the library's (scores by columns)": lambda: attention(*dec, scale),
        "decoder self-attention core, softmax by rows (fused exp)": lambda: by_rows(dec),
        "decoder self-attention core, MLX's fused attention": lambda: mx.fast.scaled_dot_product_attention(
            *dec, scale=scale
        ),
        "AIFI attention core, the library's (scores by columns)": lambda: attention(*enc, scale),
        "AIFI attention core, softmax by rows (fused exp)": lambda: by_rows(enc),
        "max of 720k scores over the last axis (rows)": lambda: values.max(axis=-1, keepdims=True),
        "max of 720k scores over the second-last axis (columns)": lambda: values.max(axis=-2, keepdims=True),
        "sum of 720k scores over the last axis (rows)": lambda: values.sum(axis=-1, keepdims=True),
        "sum of 720k scores over the second-last axis (columns)": lambda: values.sum(axis=-2, keepdims=True),
        "deformable attention weights' softmax, the library's": lambda: _softmax(logits),
        "deformable attention weights' softmax, MLX's": lambda: mx.softmax(logits, axis=-1, precise=True),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.detector_ops")
    p.add_argument("--model", required=True, help="the MLX detector (a converted or Hugging Face folder)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", help="write the figures as JSON here too")
    args = p.parse_args(argv)
    result = run(args.model, args.repeats)
    for name, seconds in result["seconds"].items():
        print(f"{name:46s} {seconds * 1e3:8.2f} ms")
    g, e = result["gather"], result["exp_720k"]
    print(f"row gather in numpy ({g['rows']} rows of {g['row_floats']} floats) {g['numpy_take_s'] * 1e3:8.2f} ms")
    one, two = e["one_stream_s"] * 1e3, e["two_streams_s"] * 1e3
    print(f"exp of 720k values: one CPU stream {one:.2f} ms, split over two {two:.2f} ms")
    for name, seconds in result["choices"].items():
        print(f"{name:66s} {seconds * 1e3:8.2f} ms")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
