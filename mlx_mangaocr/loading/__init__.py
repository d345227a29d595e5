"""Layer 2, loading: checkpoint folders and hub ids to models. ``registry`` holds the model kinds
and the one default-model policy; ``checkpoints`` what both kinds share."""
