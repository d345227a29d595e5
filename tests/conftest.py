"""Shared fixtures: random-weight checkpoints in the real layout, transformers oracles, processors."""

from __future__ import annotations

import os

os.environ.setdefault("MLX_ENABLE_TF32", "0")  # fp32 parity on CUDA; no effect on CPU or Metal

# torch first: OpenBLAS loaded globally before torch slows torch's CPU matmuls several times; MLX still
# picks OpenBLAS up when mlx_mangaocr is imported after torch.
import torch  # noqa: E402,F401,I001
import mlx_mangaocr  # noqa: E402
import pytest  # noqa: E402
from testing.synthetic import FULL, IMAGES, Spec, load_oracle, write_checkpoint  # noqa: E402
from testing.synthetic_detector import (  # noqa: E402
    FULL_DETECTOR,
    SMALL_DETECTOR,
    DetectorSpec,
    load_detector_oracle,
    write_detector,
)

# Tiny checkpoints keep the real layout, vocabulary and image size, with a narrow model.
TINY = Spec(head_scale=30.0, sep_bias=7.0, cross_scale=5.0)
TINY_TIED_BIN = Spec(
    tied=True, weights="bin", position_ids=True, seed=1, head_scale=30.0, sep_bias=6.0, cross_scale=5.0
)


def pytest_configure(config):
    assert len(IMAGES) == 14, f"expected the 14 shared images, found {len(IMAGES)}"


class WithOracle64:
    """``oracle64``: a float64 copy of ``self.oracle``, made on first use, the reference both fp32
    sides' errors are measured against (see oracle.fp32_bound)."""

    oracle = None
    _oracle64 = None

    @property
    def oracle64(self):
        if self._oracle64 is None:
            import copy

            self._oracle64 = copy.deepcopy(self.oracle).double()
        return self._oracle64


class Built(WithOracle64):
    """A checkpoint folder with its transformers oracle."""

    def __init__(self, folder, spec: Spec):
        self.folder = folder
        self.spec = spec
        self.torch_model = write_checkpoint(folder, spec)
        self.oracle = load_oracle(folder)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("tiny"), TINY)


@pytest.fixture(scope="session")
def tiny_tied_bin(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("tiny_tied_bin"), TINY_TIED_BIN)


@pytest.fixture(scope="session")
def full(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("full"), FULL)


@pytest.fixture(scope="session")
def tiny_processor(tiny):
    return mlx_mangaocr.load_mlx_processor(tiny.folder)


@pytest.fixture(scope="session")
def full_processor(full):
    return mlx_mangaocr.load_mlx_processor(full.folder)


class BuiltDetector(WithOracle64):
    """A detector checkpoint folder, transformers' model and PIL image processor for it, and our detector."""

    def __init__(self, folder, spec: DetectorSpec):
        self.folder = folder
        self.spec = spec
        write_detector(folder, spec)
        self.oracle, self.image_processor = load_detector_oracle(folder)
        self.detector = mlx_mangaocr.load_detector(folder)


@pytest.fixture(scope="session")
def small_detector(tmp_path_factory) -> BuiltDetector:
    return BuiltDetector(tmp_path_factory.mktemp("small_detector"), SMALL_DETECTOR)


@pytest.fixture(scope="session")
def full_detector(tmp_path_factory) -> BuiltDetector:
    return BuiltDetector(tmp_path_factory.mktemp("full_detector"), FULL_DETECTOR)


def pytest_terminal_summary(terminalreporter):
    from oracle import FIGURES

    if FIGURES:
        terminalreporter.section("parity figures measured in this run")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
