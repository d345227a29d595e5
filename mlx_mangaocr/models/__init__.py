"""Layer 1, models: the OCR model and the detector (each in its own subpackage) and the blocks they
share. Nothing here reads checkpoints or runs a search; it imports only ``core``."""
