"""Pixel values equal upstream's (transformers' PIL image processor after L -> RGB), bit for bit."""

import io
from pathlib import Path

import numpy as np
import pytest
from oracle import generated_images, pixel_values
from PIL import Image

from mlx_mangaocr.core.images import load_image
from mlx_mangaocr.models.ocr.image_processing import ImageProcessor
from testing.synthetic import IMAGES


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


def test_one_suffix_set_for_crops_pages_and_volumes(tmp_path):
    """Every suffix of IMAGE_SUFFIXES is a format this Pillow decodes, and every mode takes it: crops
    in a folder, --watch, and a volume's pages (folder or archive)."""
    import zipfile

    from PIL import Image, features

    from mlx_mangaocr.core.images import IMAGE_SUFFIXES, image_files
    from mlx_mangaocr.frontends.cli.common import expand_inputs
    from mlx_mangaocr.pipelines.volumes.volume import Volume

    assert (".avif" in IMAGE_SUFFIXES) == ("avif" in features.modules and features.check_module("avif"))
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF",
               ".tif": "TIFF", ".tiff": "TIFF", ".avif": "AVIF"}  # fmt: skip
    folder = tmp_path / "all"
    folder.mkdir()
    with zipfile.ZipFile(tmp_path / "all.cbz", "w") as archive:
        for i, suffix in enumerate(IMAGE_SUFFIXES):
            path = folder / f"{i:02d}{suffix.upper() if i % 2 else suffix}"
            Image.new("RGB", (16, 12), (i * 9, 80, 160)).save(path, format=formats[suffix])
            archive.write(path, path.name)
            assert load_image(path).size == (16, 12)  # decodable here
    names = sorted(p.name for p in folder.iterdir())
    assert [p.name for p in image_files(folder)] == names  # --watch and crop folders
    assert [Path(p).name for p in expand_inputs([str(folder)])[0]] == names
    assert Volume.open(folder).pages == names and Volume.open(tmp_path / "all.cbz").pages == names
