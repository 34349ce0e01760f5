"""geopixeld pipeline: I/O, tiling, geometry, planning runs, shards and the command line."""

__version__ = "0.1.0"
