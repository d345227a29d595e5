"""The OCR model, manga-ocr's VisionEncoderDecoder: ViT encoder, BERT decoder, KV cache, greedy
and beam search, continuous batching, manga-ocr's pre- and post-processing, and the processor API
(``load_mlx_processor``)."""
