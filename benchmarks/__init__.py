"""MLX against PyTorch, side by side (speed, memory, exact-match parity). Not built yet: see issue 3."""
