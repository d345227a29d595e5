"""Fine-tuning the OCR model (``mlx-mangaocr train``): labels, batches, the compiled step, the
optimizers of Hugging Face's Trainer, the run's folder, and the loop."""

from .optimizer import OPTIMIZERS, SCHEDULES
from .output import OutputError
from .run import TrainCallback, TrainingError, TrainResult, train
from .settings import TrainSettings

__all__ = ["OPTIMIZERS", "SCHEDULES", "OutputError", "TrainCallback", "TrainResult", "TrainSettings", "TrainingError",
           "train"]  # fmt: skip
