"""The comic text and bubble detector (RT-DETR-v2, ``ogkalu/comic-text-and-bubble-detector``):
config, backbone, encoder, decoder, pre- and post-processing."""
