"""Bad and unusual input, each with its exact outcome: upstream manga-ocr's result (same pixels,
so the same text), or ``InvalidImageError`` with a message that names the problem.

Upstream reads a path with ``Image.open`` and runs ``img.convert("L").convert("RGB")`` and the
ViT image processor; ``oracle.pixel_values`` does exactly that."""

import io
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import pixel_values
from PIL import Image

from mlx_mangaocr import InvalidImageError, MangaOcrError, ModelLoadError, load_mlx_processor
from testing.synthetic import IMAGES

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, size=(40, 60), dtype=np.uint8)
RGB = RNG.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)


def _png(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _unusual_images():
    """(name, what is passed to the processor, the image upstream would open)."""
    rgb = Image.fromarray(RGB)
    modes = {
        "mode 1": rgb.convert("1"),
        "mode L": Image.fromarray(GRAY),
        "mode LA": rgb.convert("LA"),
        "mode RGB": rgb,
        "mode RGBA": Image.fromarray(RNG.integers(0, 256, size=(40, 60, 4), dtype=np.uint8)),
        "mode CMYK": rgb.convert("CMYK"),
        "mode I;16": Image.fromarray(RNG.integers(0, 65536, size=(40, 60), dtype=np.uint16)),
        "mode I": Image.fromarray(RNG.integers(-1000, 1000, size=(40, 60), dtype=np.int32)),
        "mode F": Image.fromarray(RNG.normal(128, 80, size=(40, 60)).astype(np.float32)),
    }
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    modes["mode P with transparency"] = palette
    for name, image in modes.items():
        yield name, image, image
    sixteen = _png(Image.fromarray(RNG.integers(0, 65536, size=(30, 50), dtype=np.uint16)))
    yield "16-bit PNG file", sixteen, Image.open(io.BytesIO(sixteen))
    yield "1x1", Image.fromarray(GRAY[:1, :1]), Image.fromarray(GRAY[:1, :1])
    tall = Image.fromarray(RNG.integers(0, 256, size=(5000, 1), dtype=np.uint8))
    yield "1 wide x 5000 tall", tall, tall
    wide = Image.fromarray(RNG.integers(0, 256, size=(1, 5000), dtype=np.uint8))
    yield "5000 wide x 1 tall", wide, wide
    frames = [Image.fromarray(GRAY), Image.fromarray(255 - GRAY)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = buf.getvalue()
    yield "animated GIF (first frame)", gif, Image.open(io.BytesIO(gif))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees; upstream does not apply it, nor do we
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, format="JPEG", exif=exif)
    yield "JPEG with EXIF orientation 6", buf.getvalue(), Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("name,image,upstream", list(_unusual_images()), ids=[c[0] for c in _unusual_images()])
def test_unusual_images_give_upstreams_pixels_and_a_text(tiny, tiny_processor, name, image, upstream):
    ours = tiny_processor.image_processor(image)
    np.testing.assert_array_equal(ours[None], pixel_values(tiny.folder, upstream).numpy().transpose(0, 2, 3, 1))
    assert isinstance(tiny_processor.process_image(image, num_beams=1), str)


def test_animated_gif_reads_the_first_frame_and_exif_is_not_applied(tiny_processor):
    cases = {c[0]: c for c in _unusual_images()}
    _, gif, _ = cases["animated GIF (first frame)"]
    first = tiny_processor.image_processor(Image.fromarray(GRAY))
    np.testing.assert_array_equal(tiny_processor.image_processor(gif), first)
    _, jpeg, _ = cases["JPEG with EXIF orientation 6"]
    assert Image.open(io.BytesIO(jpeg)).size == (60, 40)  # not turned to 40x60


def _bad_images(tmp_path):
    """(name, input, the message InvalidImageError must carry)."""
    yield "missing path", tmp_path / "nope.png", "image file not found"
    yield "directory", tmp_path, "got a directory"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    yield "empty file", empty, r"image file is empty \(0 bytes\)"
    yield "empty bytes", b"", "the image bytes are empty"
    text = tmp_path / "notes.png"
    text.write_text("hello, not a picture")
    yield "not-image bytes in a .png", text, "is not an image PIL can read"
    yield "random bytes", bytes(RNG.integers(0, 256, size=1000, dtype=np.uint8)), "not an image PIL can read"
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(IMAGES[0].read_bytes()[:600])
    yield "truncated JPEG", truncated, r"could not be decoded \(truncated or corrupt\?\)"
    png = _png(Image.fromarray(RGB))
    yield "truncated PNG", png[: len(png) // 2], r"could not be decoded \(truncated or corrupt\?\)"
    yield "lazily opened truncated PNG", Image.open(io.BytesIO(png[: len(png) // 2])), "could not be decoded"
    yield "zero-size PIL image", Image.new("L", (0, 0)), r"the image is empty \(0x0\)"
    yield "zero-size array", np.zeros((0, 5), dtype=np.uint8), r"the image is empty \(shape \(0, 5\)\)"
    yield "LAB image (Pillow cannot make it gray)", Image.new("LAB", (4, 4)), "mode LAB cannot be made grayscale"
    yield "float array", np.zeros((10, 10), dtype=np.float32), r"must be uint8, got float32 \(for floats in \[0, 1\]"
    yield "bool array", np.zeros((10, 10), dtype=bool), "must be uint8, got bool"
    yield "uint16 array", np.zeros((10, 10), dtype=np.uint16), "must be uint8, got uint16"
    yield "1-D array", np.zeros(10, dtype=np.uint8), r"must be \(H, W\), \(H, W, 3\) or \(H, W, 4\), got shape \(10,\)"
    yield "2-channel array", np.zeros((4, 4, 2), dtype=np.uint8), r"got shape \(4, 4, 2\)"
    yield "batch-shaped array", np.zeros((2, 4, 4, 3), dtype=np.uint8), r"got shape \(2, 4, 4, 3\)"
    yield "wrong type", 42, "unsupported image input of type int"
    yield "None", None, "unsupported image input of type NoneType"


def test_bad_images_raise_one_exported_exception_naming_the_problem(tiny_processor, tmp_path):
    assert issubclass(InvalidImageError, MangaOcrError) and issubclass(InvalidImageError, ValueError)
    for name, image, message in _bad_images(tmp_path):
        with pytest.raises(InvalidImageError, match=message):
            tiny_processor.process_image(image)
        with pytest.raises(InvalidImageError, match=message):  # one bad image in a batch is named too
            tiny_processor.process_images([IMAGES[0], image])
        assert name


def test_decompression_bomb_is_refused_before_decoding(tiny_processor, monkeypatch):
    bomb = _png(Image.new("L", (3000, 3000)))  # 9 Mpx in a few kB
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000_000)  # Pillow alone would only warn here
    with pytest.raises(InvalidImageError, match=r"3000x3000 = 9,000,000 pixels, over the 6,000,000-pixel limit"):
        tiny_processor.process_image(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # over twice the limit: Pillow refuses to open
    with pytest.raises(InvalidImageError, match=r"over the 1,000,000-pixel limit .*Image size \(9000000 pixels\)"):
        tiny_processor.process_image(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)  # raised by the caller: it is read
    assert isinstance(tiny_processor.process_image(bomb, num_beams=1), str)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    channels=st.sampled_from([None, 3, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_any_uint8_array_gives_upstreams_pixels(tiny, tiny_processor, height, width, channels, seed):
    shape = (height, width) if channels is None else (height, width, channels)
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    expected = pixel_values(tiny.folder, Image.fromarray(array)).numpy().transpose(0, 2, 3, 1)[0]
    np.testing.assert_array_equal(tiny_processor.image_processor(array), expected)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000) | st.builds(lambda n: _png(Image.fromarray(RGB))[:n], st.integers(0, 2000)))
def test_property_any_bytes_give_pixels_or_invalid_image_error(tiny_processor, data):
    """Arbitrary bytes and every prefix of a PNG: pixels, or InvalidImageError, never another error."""
    try:
        pixels = tiny_processor.image_processor(data)
    except InvalidImageError:
        return
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.float32


def test_model_errors_leave_nothing_half_loaded(tiny, tmp_path):
    """A failed load raises ModelLoadError and returns nothing; a processor loaded before is unharmed."""
    import shutil

    good = load_mlx_processor(tiny.folder)
    before = good.process_image(IMAGES[0], num_beams=1)
    broken = tmp_path / "broken"
    shutil.copytree(tiny.folder, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or not a safetensors file"):
        load_mlx_processor(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="has no weights: expected model.safetensors or pytorch_model.bin"):
        load_mlx_processor(broken)
    assert good.process_image(IMAGES[0], num_beams=1) == before


def test_one_processor_shared_by_threads_gives_the_same_results(tiny_processor):
    expected = {str(p): tiny_processor.process_image(p, num_beams=1) for p in IMAGES}
    expected_beam = tiny_processor.process_images(IMAGES[:4])
    results, errors = {}, []

    def work(worker: int) -> None:
        try:
            for p in IMAGES[worker::4]:
                results[str(p)] = tiny_processor.process_image(p, num_beams=1)
            results[f"beam-{worker}"] = tiny_processor.process_images(IMAGES[:4], batch_size=2)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {k: v for k, v in results.items() if not k.startswith("beam-")} == expected
    assert all(results[f"beam-{w}"] == expected_beam for w in range(4))


def test_output_stops_at_the_maximum_length(tmp_path):
    """A model that never produces [SEP] still returns, with max_length tokens at most."""
    from conftest import Built

    from testing.synthetic import Spec

    Built(tmp_path, Spec(head_scale=30.0, sep_bias=-50.0, cross_scale=5.0, seed=3))  # [SEP] never wins
    processor = load_mlx_processor(tmp_path)
    for settings_ in ({"num_beams": 1}, {}, {"num_beams": 1, "max_length": 20}):
        ids = processor.generate_ids([IMAGES[0]], **settings_)[0]
        assert len(ids) == settings_.get("max_length", 300) and ids[-1] != processor.config.generation.eos_token_id
        assert isinstance(processor.decode(ids), str)
    with pytest.raises(ValueError, match="needs 999 decoder positions; the model has"):
        processor.process_image(IMAGES[0], max_length=1000)
