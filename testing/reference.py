"""The PyTorch references: upstream manga-ocr's model calls (``upstream``) and transformers' RT-DETR
detector with its PIL image processor and ``post_process_object_detection``, as mokuro and
comic-translate run them. The tests compare against them; the benchmark times them (``sides``)."""

from __future__ import annotations

from .upstream import load, post_process, preprocess


def pick_device(requested: str = "auto") -> str:
    """``requested``, or for "auto" the best PyTorch device here: mps, else cuda, else cpu."""
    import torch

    if requested != "auto":
        return requested
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cuda" if torch.cuda.is_available() else "cpu"


def sync(torch, device: str) -> None:
    """Wait for the device's queued work: CUDA and MPS run asynchronously, a CPU does not."""
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def trim(row: list[int], eos: int) -> list[int]:
    """A generate() row up to and including its first end token."""
    return row[: row.index(eos, 1) + 1] if eos in row[1:] else row


class TorchOcr:
    """manga-ocr on PyTorch: its loading, preprocessing, ``generate`` and post-processing."""

    name = "torch"

    def __init__(self, model: str, device: str = "auto"):
        self.model_path, self.requested_device = model, device

    def load(self) -> None:
        import torch

        self.torch = torch
        self.device = pick_device(self.requested_device)
        self.model, self.tokenizer, self.image_processor = load(self.model_path, self.device)
        self.max_length = self.model.generation_config.max_length
        self.eos = self.model.generation_config.eos_token_id

    def sync(self) -> None:
        sync(self.torch, self.device)

    def preprocess(self, images):
        pixels = preprocess(self.image_processor, images).to(self.device)
        self.sync()
        return pixels

    def encode(self, pixels):
        with self.torch.no_grad():
            hidden = self.model.encoder(pixels).last_hidden_state
        self.sync()
        return hidden

    def generate(self, pixels, settings: dict) -> list[list[int]]:
        settings = {"max_length": self.max_length, **settings}  # manga-ocr passes max_length=300
        with self.torch.no_grad():
            out = self.model.generate(pixels, **settings)
        self.sync()
        return [trim(row, self.eos) for row in out.tolist()]

    def text(self, ids: list[int]) -> str:
        return post_process(self.tokenizer.decode(ids, skip_special_tokens=True))

    def step_logits(self, pixels, ids: list[int]):
        """Teacher-forced logits (len(ids), vocab) for one image, for the margin at a divergence."""
        with self.torch.no_grad():
            out = self.model(pixel_values=pixels, decoder_input_ids=self.torch.tensor([ids], device=self.device))
        return out.logits[0].float().cpu().numpy()


class TorchDetector:
    """transformers' RT-DETR-v2 detector, its PIL image processor and ``post_process_object_detection``."""

    name = "torch"

    def __init__(self, device: str = "auto"):
        self.requested = device

    def load(self, model: str) -> None:
        import torch
        from transformers import RTDetrImageProcessor, RTDetrV2ForObjectDetection

        self.torch = torch
        self.device = pick_device(self.requested)
        self.processor = RTDetrImageProcessor.from_pretrained(model)  # the PIL backend without torchvision
        self.net = RTDetrV2ForObjectDetection.from_pretrained(model).eval().to(self.device)

    def sync(self) -> None:
        sync(self.torch, self.device)

    def preprocess(self, pages):  # RGB pages, as comic-translate feeds it
        pixels = self.processor(pages, return_tensors="pt").pixel_values.to(self.device)
        return pixels, [(p.height, p.width) for p in pages]

    def model(self, pixels):
        with self.torch.no_grad():
            out = self.net(pixels)
        self.sync()
        return out

    def postprocess(self, raw, sizes, threshold):
        labels = self.net.config.id2label
        results = self.processor.post_process_object_detection(raw, threshold=threshold, target_sizes=sizes)
        return [
            [
                (labels[int(lab)], b.tolist(), float(s))
                for lab, b, s in zip(r["labels"], r["boxes"], r["scores"], strict=True)
            ]
            for r in results
        ]
