"""The MLX comic text detector against transformers' RT-DETR-v2 (random checkpoints in the hub's
layout; see benchmarks/synthetic_detector.py) on generated pages.

Tolerances (``oracle.fp32_bound``): every compared tensor is also computed by transformers in
float64, and MLX's max error may be at most 4x transformers' own fp32 error (floored at one ulp).
The query selection takes the top Q encoder tokens by score; two tokens whose scores are closer
than fp32 noise may be chosen differently by two correct implementations, so the selected set may
differ only there, and the decoder is then compared on transformers' choice (every side forced
onto it). Detections are compared as sets: same labels, boxes within 1e-3 of the image size, scores
within fp32 noise (so the order may differ only between such scores).
"""

import contextlib

import mlx.core as mx
import numpy as np
import pytest
import torch
from hostile import within
from mlx.utils import tree_flatten
from oracle import assert_fp32_close, fp32_bound, record
from PIL import Image

from mlx_mangaocr import InvalidImageError, ModelLoadError, load_detector
from mlx_mangaocr.loading.checkpoints import read_weights
from mlx_mangaocr.loading.detector import load_detector_checkpoint
from mlx_mangaocr.models.detection.postprocess import post_process
from testing.pages import make_page, make_webtoon
from testing.synthetic_detector import BASIC_DETECTOR, OPTIONS_DETECTOR, SMALL_DETECTOR, write_detector

PAGES = {
    "page": lambda: make_page(1).image,  # 1000x1400
    "square": lambda: make_page(2, width=1200, height=1200).image,
    "wide": lambda: make_page(4, width=1600, height=900, rows=2, cols=3).image,
    "tall": lambda: make_webtoon(1).image,  # 700x4200
}


def torch_pixels(built, image) -> torch.Tensor:
    return built.image_processor(image, return_tensors="pt").pixel_values


@contextlib.contextmanager
def forced_queries(index: torch.Tensor):
    """Make transformers' query selection (its one torch.topk over the encoder scores) return ``index``."""
    real = torch.topk

    def topk(values, k, dim=None, **kwargs):
        if dim == 1 and values.dim() == 2 and k == index.shape[1]:
            return values.gather(1, index), index
        return real(values, k, dim=dim, **kwargs)

    torch.topk = topk
    try:
        yield
    finally:
        torch.topk = real


def run_both(built, image, force: bool):
    """Ours, transformers fp32 and fp64 on one page; with ``force``, all decode transformers' fp32 choice."""
    pixels = torch_pixels(built, image)
    with torch.no_grad():
        theirs = built.oracle(pixels, output_hidden_states=True)
        chosen = torch.topk(theirs.enc_outputs_class.max(-1).values, built.oracle.config.num_queries, dim=1)[1]
        with forced_queries(chosen) if force else contextlib.nullcontext():
            exact = built.oracle64(pixels.double(), output_hidden_states=True)
    ours = built.detector.run(built.detector.preprocess([image])[0], chosen.numpy() if force else None)
    return ours, theirs, exact, chosen


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", list(PAGES))
def test_pixel_values_are_identical(small_detector, name):
    image = PAGES[name]()
    ours, size = small_detector.detector.image_processor(image)
    assert size == (image.height, image.width)
    np.testing.assert_array_equal(ours, nhwc(torch_pixels(small_detector, image))[0])


def test_pixel_values_identical_for_every_mode_and_input(full_detector, tmp_path):
    image = make_page(3).image
    path = tmp_path / "page.png"
    image.save(path)
    processor = full_detector.detector.image_processor
    # transformers passes other modes through with 1, 2 or 4 channels, which its model then refuses;
    # here they are made RGB first (as a grayscale scan must be), and equal transformers on that RGB image.
    for mode in ("L", "LA", "RGBA", "P", "1", "CMYK"):
        form = image.convert(mode)
        assert torch_pixels(full_detector, form).shape[1] != 3 or mode == "RGB"
        expected = nhwc(torch_pixels(full_detector, form.convert("RGB")))[0]
        np.testing.assert_array_equal(processor(form)[0], expected, err_msg=mode)
    reference = nhwc(torch_pixels(full_detector, image))[0]
    for form in (path, str(path), path.read_bytes(), np.asarray(image)):
        np.testing.assert_array_equal(processor(form)[0], reference)


def _selection_within_noise(ours, theirs, exact, k):
    """The chosen tokens agree except between scores closer to the k-th than fp32 noise."""
    scores = theirs.enc_outputs_class.max(-1).values[0].numpy()
    noise = fp32_bound(theirs.enc_outputs_class.numpy(), exact.enc_outputs_class.numpy())
    kth = np.sort(scores)[::-1][k - 1]
    ours_set = set(np.array(ours.topk_index)[0].tolist())
    theirs_set = set(torch.topk(torch.from_numpy(scores), k)[1].tolist())
    for token in ours_set ^ theirs_set:
        assert abs(scores[token] - kth) <= 2 * noise, (token, scores[token], kth, noise)
    return ours_set == theirs_set


@pytest.mark.parametrize("size", ["small_detector", "full_detector", "basic_detector", "options_detector"])
def test_maps_selection_and_decoder_match_transformers(size, request):
    built = request.getfixturevalue(size)
    pages = ["page", "wide", "tall"] if size == "small_detector" else ["page"]
    worst: dict[str, tuple[float, float]] = {}  # what -> (error / transformers' error, max |MLX - transformers|)

    def check(what, ours, theirs32, exact64, where):
        ours, theirs32 = np.asarray(ours), np.asarray(theirs32)
        ratio = assert_fp32_close(ours, theirs32, np.asarray(exact64), f"{where} {what}")
        diff = float(np.abs(ours - theirs32).max())
        old = worst.get(what, (0.0, 0.0))
        worst[what] = (max(old[0], ratio), max(old[1], diff))

    for name in pages:
        image = PAGES[name]()
        free, theirs, exact, _ = run_both(built, image, force=False)
        with torch.no_grad():
            their_backbone = built.oracle.model.backbone.model(torch_pixels(built, image)).feature_maps
            exact_backbone = built.oracle64.model.backbone.model(torch_pixels(built, image).double()).feature_maps
        checks = [
            ("backbone", np.array(o), nhwc(t), nhwc(e))
            for o, t, e in zip(free.backbone_maps, their_backbone, exact_backbone, strict=True)
        ]
        checks += [
            ("encoder", np.array(o), nhwc(t), nhwc(e))
            for o, t, e in zip(
                free.encoder_maps, theirs.encoder_last_hidden_state, exact.encoder_last_hidden_state, strict=True
            )
        ]
        checks.append(("encoder scores", np.array(free.enc_logits), theirs.enc_outputs_class, exact.enc_outputs_class))
        for what, o, t, e in checks:
            check(what, o, t, e, name)
        same = _selection_within_noise(free, theirs, exact, built.oracle.config.num_queries)
        if size == "small_detector":
            assert same, "the small checkpoint's pages have no near-tie at the cut"
        forced, theirs, exact, chosen = run_both(built, image, force=True)
        assert np.array_equal(np.array(forced.topk_index), chosen.numpy())
        for what, o, t, e in (
            ("decoder logits", forced.logits, theirs.logits, exact.logits),
            ("decoder boxes", forced.boxes, theirs.pred_boxes, exact.pred_boxes),
        ):
            check(what, np.array(o), t.numpy(), e.numpy(), name)
    for what, (ratio, diff) in worst.items():
        value = f"max |MLX - transformers| {diff:.2e}; MLX error / transformers' fp32 error {ratio:.2f}"
        record(f"detector {what} ({size}, worst)", value)


def _assert_same_detections(ours, theirs_result, id2label, size, noise, threshold):
    """Same set (label, box within 1e-3 of the image size, score within noise), except detections
    whose score is within noise of the threshold; so the order differs only between near-equal scores."""
    theirs = [
        (id2label[int(label)], box.tolist(), float(score))
        for label, box, score in zip(
            theirs_result["labels"], theirs_result["boxes"], theirs_result["scores"], strict=True
        )
    ]
    tolerance = 1e-3 * max(size)
    unmatched = list(theirs)
    for det in ours:
        match = next(
            (t for t in unmatched if t[0] == det.label and abs(t[2] - det.score) <= noise
             and max(abs(a - b) for a, b in zip(t[1], det.box, strict=True)) <= tolerance),
            None,
        )  # fmt: skip
        if match is None:
            assert abs(det.score - threshold) <= noise, (det, threshold)
            continue
        unmatched.remove(match)
    assert all(abs(t[2] - threshold) <= noise for t in unmatched), unmatched
    assert [d.score for d in ours] == sorted((d.score for d in ours), reverse=True)


@pytest.mark.parametrize("size", ["small_detector", "full_detector"])
def test_detections_are_the_same_set_at_several_thresholds(size, request):
    built = request.getfixturevalue(size)
    image = PAGES["page"]()
    forced, theirs, exact, _ = run_both(built, image, force=size == "full_detector")
    logits, boxes = np.array(forced.logits)[0], np.array(forced.boxes)[0]
    # A logit error d moves a sigmoid score by at most d / 4.
    noise = fp32_bound(theirs.logits.numpy(), exact.logits.numpy()) / 4
    scores = np.sort(1 / (1 + np.exp(-theirs.logits.numpy().ravel())))[::-1]
    thresholds = [0.05, 0.3, 0.5, float(scores[len(scores) // 4]), float(scores[built.oracle.config.num_queries // 2])]
    counts = []
    for threshold in thresholds:
        theirs_result = built.image_processor.post_process_object_detection(
            theirs, threshold=threshold, target_sizes=[(image.height, image.width)]
        )[0]
        ours = post_process(logits, boxes, (image.height, image.width), threshold, built.detector.config.id2label)
        _assert_same_detections(ours, theirs_result, built.detector.config.id2label, image.size, noise, threshold)
        counts.append(len(ours))
    assert len(set(counts)) > 2  # the thresholds cut through the score list
    record(f"detections per threshold {[round(t, 3) for t in thresholds]} ({size})", counts)


def test_detect_and_detect_batch_end_to_end(small_detector):
    """The public API: detect(page) equals transformers' pipeline; detect_batch equals one at a time."""
    det = small_detector.detector
    images = [PAGES[name]() for name in ("page", "wide", "tall")]
    singles = [det.detect(image, threshold=0.3) for image in images]
    for image, found in zip(images, singles, strict=True):
        with torch.no_grad():
            theirs = small_detector.oracle(torch_pixels(small_detector, image))
        result = small_detector.image_processor.post_process_object_detection(
            theirs, threshold=0.3, target_sizes=[(image.height, image.width)]
        )[0]
        assert all(d.label in ("bubble", "text_bubble", "text_free") and 0 < d.score < 1 for d in found)
        assert all(isinstance(v, float) for d in found for v in d.box)
        _assert_same_detections(found, result, det.config.id2label, image.size, 1e-4, 0.3)
    batch = det.detect_batch(images, threshold=0.3)
    for one, many in zip(singles, batch, strict=True):
        assert [d.label for d in one] == [d.label for d in many]
        np.testing.assert_allclose([d.box for d in one], [d.box for d in many], rtol=0, atol=1e-3)
    assert det.detect_batch([]) == []


def test_bad_inputs_and_options(small_detector, tmp_path):
    det = small_detector.detector
    with pytest.raises(InvalidImageError, match="image file not found"):
        det.detect(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidImageError, match="is not an image PIL can read"):
        det.detect(tmp_path / "text.png")
    with pytest.raises(InvalidImageError, match="the image is empty"):
        det.detect(np.zeros((0, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="threshold must be in"):
        det.detect(PAGES["page"](), threshold=1.5)


def test_convert_tells_the_models_apart_and_loads_the_same(small_detector, tiny, tmp_path):
    from mlx_mangaocr.frontends.convert import convert, model_kind

    assert model_kind(small_detector.folder) == "detector" and model_kind(tiny.folder) == "ocr"
    out = convert(str(small_detector.folder), tmp_path / "det")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    converted = load_detector(out)
    image = PAGES["page"]()
    pixels = converted.preprocess([image])[0]
    a, b = converted.run(pixels), small_detector.detector.run(pixels)
    assert mx.array_equal(a.logits, b.logits) and mx.array_equal(a.boxes, b.boxes)
    # sanitize is idempotent: the converted file passes through unchanged
    model = converted.model
    once = model.sanitize(read_weights(small_detector.folder))
    twice = model.sanitize(once)
    assert once.keys() == twice.keys() and all(mx.array_equal(once[k], twice[k]) for k in once)
    assert not any("running_mean" in k or "num_batches_tracked" in k for k in once)
    with pytest.raises(ModelLoadError, match="expected an 'rt_detr_v2' detector"):
        load_detector(tiny.folder)
    from mlx_mangaocr import load_mlx_processor

    with pytest.raises(ModelLoadError, match="'rt_detr_v2' model; expected a 'vision-encoder-decoder'"):
        load_mlx_processor(small_detector.folder)


def test_broken_checkpoints_name_the_problem(small_detector, tmp_path):
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(small_detector.folder, folder)
    weights = load_file(folder / "model.safetensors")
    weights.pop("model.decoder.class_embed.1.weight")
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="missing tensor.*decoder.class_embed.1.weight"):
        load_detector_checkpoint(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read .*preprocessor_config.json"):
        load_detector_checkpoint(folder)
    (folder / "preprocessor_config.json").write_text("{}")
    config["learn_initial_query"] = True  # transformers' own inference cannot run it: no oracle, refused
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="learn_initial_query true"):
        load_detector_checkpoint(folder)
    config["learn_initial_query"] = False
    for key, value, message in [
        ("decoder_layers", 10_000_000, "describes a model of at least [0-9,]+ parameters, more than the"),
        ("d_model", "256", "d_model must be a whole number >= 1, got '256'"),
        ("encoder_in_channels", [0, 64], "encoder_in_channels must be a whole number >= 1"),
        ("encoder_layers", -1, "encoder_layers must be a whole number >= 0"),
        ("decoder_n_points", [4, 4, 4], "decoder_n_points must be a whole number >= 1"),
        ("anchor_image_size", [1, 1], "anchor_image_size must be null or"),
    ]:
        (folder / "config.json").write_text(json.dumps({**config, key: value}))
        with within(120), pytest.raises(ModelLoadError, match=message):
            load_detector_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps(config))
    for size, message in [(10**6, "an input of 1000000x1000000 is over the"), (1, "whole numbers >= 32")]:
        (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": size, "width": size}}))
        with pytest.raises(ModelLoadError, match=message):
            load_detector_checkpoint(folder)
    (folder / "preprocessor_config.json").write_text("{}")
    config["backbone_config"]["model_type"] = "timm"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unsupported detector backbone"):
        load_detector_checkpoint(folder)
    # the lower bound on the parameters that is checked against the weights holds, and is not vacuous
    for i, spec in enumerate((SMALL_DETECTOR, OPTIONS_DETECTOR, BASIC_DETECTOR)):
        built = tmp_path / f"spec{i}"
        write_detector(built, spec)
        checkpoint = load_detector_checkpoint(built)
        actual = sum(v.size for _, v in tree_flatten(checkpoint.model.parameters()))
        assert actual / 2 < checkpoint.config.parameter_count_at_least() <= actual


def test_default_detector_is_converted_on_first_use(small_detector, tmp_path, monkeypatch):
    from mlx_mangaocr.loading import detector as loading

    monkeypatch.setenv("MLX_MANGAOCR_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(loading, "download_detector", lambda repo: small_detector.folder)
    det = load_detector()
    target = tmp_path / "home" / "comic-text-and-bubble-detector"
    assert det.checkpoint.source == target and (target / "model.safetensors").is_file()

    def offline(repo):
        raise ModelLoadError("offline")

    monkeypatch.setattr(loading, "download_detector", offline)
    assert load_detector().checkpoint.source == target  # converted: no hub needed any more
    image = Image.new("RGB", (300, 200), "white")
    assert isinstance(det.detect(image), list)


@pytest.fixture(scope="module")
def basic_detector(tmp_path_factory):
    from conftest import BuiltDetector

    return BuiltDetector(tmp_path_factory.mktemp("basic_detector"), BASIC_DETECTOR)


@pytest.fixture(scope="module")
def options_detector(tmp_path_factory):
    """decoder_method "discrete", eval_size (no position embedding), normalize_before, anchor_image_size."""
    from conftest import BuiltDetector

    built = BuiltDetector(tmp_path_factory.mktemp("options_detector"), OPTIONS_DETECTOR)
    config = built.detector.config
    assert config.decoder_method == "discrete" and config.eval_size and config.normalize_before
    assert config.anchor_image_size
    return built


def test_full_checkpoint_has_the_published_layout(full_detector):
    """The synthetic full checkpoint is the hub's file: 770 tensors, 171,543,900 bytes, 4.49 names."""
    from safetensors import safe_open

    path = full_detector.folder / "model.safetensors"
    with safe_open(path, "np") as f:
        keys = list(f.keys())
    assert len(keys) == 770 and path.stat().st_size == 171_543_900
    assert "model.encoder.encoder.0.layers.0.fc1.weight" in keys
    assert "model.decoder.layers.0.self_attn.out_proj.weight" in keys
    assert "model.decoder.class_embed.5.weight" in keys


@pytest.mark.parametrize(
    "shape, out, kernel, stride",
    [((1, 37, 29, 8), 16, 3, 1), ((2, 41, 33, 8), 8, 3, 2), ((1, 23, 19, 4), 6, 1, 2), ((3, 17, 40, 12), 5, 3, 1)],
)
def test_banded_and_matmul_convolutions_equal_mlx_conv(shape, out, kernel, stride, monkeypatch):
    """The detector's ``Conv2d``: a 1x1 stride-1 conv is a matmul, bit for bit; a conv whose im2col
    matrix is over ``BAND_BYTES`` runs in bands of rows, each output the same dot product, so within
    two dot products' fp32 rounding of ``mx.conv2d`` (|a - b| <= 2 n u sum|x w|, n taps); lazily
    (``eager`` off, as ``mx.compile`` needs) it is ``mx.conv2d`` itself."""
    from mlx_mangaocr.models.detection import backbone

    monkeypatch.setattr(backbone, "BAND_BYTES", 4096)  # a few rows a band
    rng = np.random.default_rng(sum(shape) + kernel)
    conv = backbone.Conv2d(shape[-1], out, kernel, stride=stride, padding=(kernel - 1) // 2)
    x = mx.array(rng.standard_normal(shape, dtype=np.float32))
    plain = mx.conv2d(x, conv.weight, conv.stride, conv.padding) + conv.bias
    ours = conv(x)
    conv.eager = False
    lazy = conv(x)
    assert ours.shape == plain.shape == lazy.shape
    if kernel == 1 and stride == 1:
        assert np.array_equal(np.array(ours), np.array(plain))
    else:
        magnitude = np.array(mx.conv2d(mx.abs(x), mx.abs(conv.weight), conv.stride, conv.padding))
        n = kernel * kernel * shape[-1]
        bound = 2 * n * 2.0**-24 * magnitude + 2.0**-24 * np.abs(np.array(plain))  # + the bias add
        assert np.all(np.abs(np.array(ours) - np.array(plain)) <= bound)
        assert np.array_equal(np.array(lazy), np.array(plain))


def test_eager_and_one_graph_give_the_same_detections(small_detector, monkeypatch):
    """Block-by-block evaluation with banded convolutions (the default) and one lazy graph
    (``set_eager(False)``) find the same boxes on a page."""
    from mlx_mangaocr.models.detection import backbone

    monkeypatch.setattr(backbone, "BAND_BYTES", 2**16)  # the small detector's convs go in bands
    detector = load_detector(small_detector.folder)
    page = make_page(3).image
    eager = detector.detect(page, threshold=0.3)
    detector.model.set_eager(False)
    lazy = detector.detect(page, threshold=0.3)
    assert len(eager) == len(lazy) > 0
    for a, b in zip(eager, lazy, strict=True):
        assert a.label == b.label and abs(a.score - b.score) < 1e-4
        assert np.allclose(a.box, b.box, atol=1e-3 * max(page.size))


def test_sampling_rows_are_exact_and_weights_keep_the_dtype():
    """The deformable sampler's rows into the concatenated maps are computed in integers: in float16
    ``y * 80 + x`` rounds past 2048 cells and would read the wrong cell. Its weights keep the points'
    dtype, so a float16 detector stays float16."""
    from mlx_mangaocr.models.detection.decoder import sampling_taps

    shapes = [(80, 80), (40, 40), (20, 20)]
    # multiples of 1/64 near 1: every step to the corner coordinates is exact in float16, and they
    # fall in the last cells, whose numbers are past float16's exact whole numbers
    points = (np.random.default_rng(1).integers(58, 64, (1, 50, 3, 4, 2)) / 64).astype(np.float16)
    for discrete in (False, True):
        rows32, _ = sampling_taps(mx.array(points.astype(np.float32)), shapes, discrete)
        rows16, taps16 = sampling_taps(mx.array(points), shapes, discrete)
        assert rows16.dtype == mx.int32 and taps16.dtype == mx.float16
        assert np.array_equal(np.array(rows16), np.array(rows32))
        assert int(np.array(rows32)[..., 0, :, :].max()) > 6000  # level 0's far corner: past float16's exact range
