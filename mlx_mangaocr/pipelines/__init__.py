"""Layer 4, pipelines: what a user runs. OCR of crops, detection, whole pages, volumes and
libraries, and the sharded resumable job; they report through callbacks, never by printing."""
