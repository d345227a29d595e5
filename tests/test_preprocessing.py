"""Pixel values equal upstream's (transformers' PIL image processor after L -> RGB), bit for bit."""

import io

import numpy as np
import pytest
from oracle import generated_images, pixel_values
from PIL import Image

from benchmarks.synthetic import IMAGES
from mlx_mangaocr.images import load_image
from mlx_mangaocr.ocr.image_processing import ImageProcessor


@pytest.mark.parametrize("path", IMAGES, ids=[p.name for p in IMAGES])
def test_shared_images_match_transformers_exactly(tiny, path):
    ours = ImageProcessor.from_folder(tiny.folder)(path)
    theirs = pixel_values(tiny.folder, path)[0].permute(1, 2, 0).numpy()
    assert ours.dtype == np.float32 and ours.shape == (224, 224, 3)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name,image", list(generated_images()), ids=lambda x: x if isinstance(x, str) else "")
def test_generated_images_match_transformers_exactly(tiny, name, image):
    ours = ImageProcessor.from_folder(tiny.folder)(image)
    theirs = pixel_values(tiny.folder, image)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_every_input_form_gives_the_same_pixels(tiny):
    processor = ImageProcessor.from_folder(tiny.folder)
    path = IMAGES[3]
    reference = processor(path)
    img = Image.open(path)
    rgb = np.asarray(img.convert("RGB"))
    forms = {
        "str": str(path),
        "bytes": path.read_bytes(),
        "pil": img,
        "array-hw3": rgb,
        "array-hw": np.asarray(img.convert("L")),
        "array-hw4": np.asarray(img.convert("RGBA")),
    }
    for name, form in forms.items():
        np.testing.assert_array_equal(processor(form), reference, err_msg=name)


def test_legacy_and_dict_size_configs_are_read():
    assert ImageProcessor.from_dict({"size": 224}).height == 224
    p = ImageProcessor.from_dict({"size": {"height": 32, "width": 48}})
    assert (p.height, p.width) == (32, 48)
    img = Image.fromarray(np.zeros((5, 5), dtype=np.uint8), mode="L")
    assert p(img).shape == (32, 48, 3)


def test_png_bytes_round_trip():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 9), 7, dtype=np.uint8), mode="L").save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == (9, 8)
