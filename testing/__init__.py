"""What the tests and the benchmark share, in a checkout only (not in the wheel): random-weight
checkpoints in the hub's layouts (``synthetic``, ``synthetic_detector``), generated pages with
their truth (``pages``), and the PyTorch references (``upstream``, ``reference``, ``torch_pages``)."""
