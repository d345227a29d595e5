"""The OCR model, manga-ocr's VisionEncoderDecoder: config, ViT encoder, BERT decoder, KV cache,
manga-ocr's pre- and post-processing. No I/O beyond reading a folder's small text files."""
