"""Layer 3, engine: running the OCR model. Search rules (greedy, beam), steppers over the decoder
and its caches, continuous batching, and one chunker of preprocessed pixels."""
