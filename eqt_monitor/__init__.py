"""eqt-monitor: continuous seismic monitoring with EQTransformer and its variants."""

__version__ = "0.1.0"
