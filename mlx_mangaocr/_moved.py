"""The module paths of before the layers (issue 21), kept: ``import mlx_mangaocr.ocr.processor``,
``from mlx_mangaocr.pages.volume import Volume`` and pickles of results made under those paths
find the same modules at their new places. Each old name is the new module itself (one module
object under two names), so patching one patches the other."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

MOVED = {  # old module -> new module
    "errors": "core.errors", "images": "core.images", "names": "core.names", "atomic_files": "core.atomic_files",
    "locks": "core.locks", "distributed": "core.ranks", "_blas": "core.blas", "layers": "models.layers",
    "checkpoints": "loading.checkpoints", "hub": "loading.hub", "model_cache": "loading.converted",
    "jsonl_parts": "pipelines.jsonl_parts", "cli": "frontends.cli", "watch": "frontends.watch",
    "clipboard": "frontends.clipboard",
    "ocr.config": "models.ocr.config", "ocr.vision": "models.ocr.vision", "ocr.text_decoder": "models.ocr.text_decoder",
    "ocr.model": "models.ocr.model", "ocr.image_processing": "models.ocr.image_processing",
    "ocr.text": "models.ocr.text", "ocr.cache": "models.ocr.kv_cache", "ocr.loading": "loading.ocr",
    "ocr.generate": "engine.search", "ocr.scheduler": "engine.scheduler", "ocr.processor": "pipelines.ocr",
    "detection.config": "models.detection.config", "detection.backbone": "models.detection.backbone",
    "detection.encoder": "models.detection.encoder", "detection.decoder": "models.detection.decoder",
    "detection.model": "models.detection.model", "detection.image_processing": "models.detection.image_processing",
    "detection.postprocess": "models.detection.postprocess", "detection.loading": "loading.detector",
    "detection.detector": "pipelines.detect",
    "pages.boxes": "pipelines.pages.boxes", "pages.reading_order": "pipelines.pages.reading_order",
    "pages.crops": "pipelines.pages.crops", "pages.slicing": "pipelines.pages.slicing",
    "pages.reader": "pipelines.pages.reader", "pages.page": "pipelines.pages.page",
    "pages.draw": "pipelines.pages.draw",
    "pages.volume": "pipelines.volumes.volume", "pages.library": "pipelines.volumes.library",
    "pages.cli": "frontends.cli.pages",
}  # fmt: skip
PACKAGES = {  # old package -> where its names are now
    "ocr": ("models.ocr",),
    "detection": ("models.detection", "models.detection.postprocess", "pipelines.detect"),
    "pages": ("pipelines.pages",),
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, root: str):
        self.root = root

    def _old(self, name: str) -> str | None:
        prefix = self.root + "."
        return name[len(prefix) :] if name.startswith(prefix) else None

    def find_spec(self, name, path=None, target=None):
        old = self._old(name)
        if old in MOVED or old in PACKAGES:
            return importlib.util.spec_from_loader(name, self, is_package=old in PACKAGES)
        return None

    def create_module(self, spec):
        old = self._old(spec.name)
        if old in MOVED:
            return importlib.import_module(f"{self.root}.{MOVED[old]}")
        homes = [f"{self.root}.{home}" for home in PACKAGES[old]]
        package = types.ModuleType(spec.name, f"Moved: its names are now in {', '.join(homes)}.")

        def __getattr__(attr: str):
            for home in homes:
                module = importlib.import_module(home)
                if hasattr(module, attr):
                    return getattr(module, attr)
            raise AttributeError(f"module {spec.name!r} has no attribute {attr!r}")

        package.__getattr__ = __getattr__
        package.__path__ = []  # its submodules come through MOVED
        return package

    def exec_module(self, module) -> None:
        pass


def install(root: str) -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder(root))
