"""MLX against PyTorch, side by side, in one run on one machine: speed, memory, parity (token ids
and texts), cold loads and install size, for the OCR model, the detector, whole pages and ragged
workloads. ``python -m benchmarks --help`` (or ``mlx-mangaocr bench``); every section measures
through ``sides`` and runs each side in a fresh process; ``report`` renders the results."""
