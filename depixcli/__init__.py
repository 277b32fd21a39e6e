"""depix: reverse mosaic pixelation of faces in video (Shuvi et al., 2020)."""

__version__ = "0.1.0"
