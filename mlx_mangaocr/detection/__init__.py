"""The comic text and bubble detector (RT-DETR-v2, ``ogkalu/comic-text-and-bubble-detector``) in MLX."""

from .detector import Detector, load_detector
from .postprocess import Detection

__all__ = ["Detection", "Detector", "load_detector"]
