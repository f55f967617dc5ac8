"""geomind: run IBM/ESA's TerraMind over whole satellite scenes."""

__version__ = "0.1.0"
