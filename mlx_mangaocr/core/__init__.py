"""Layer 0, core: what every layer uses. Errors, reading images, names that are not UTF-8, atomic
files, run locks, ranks over ``mlx.launch``, and loading OpenBLAS before MLX."""
