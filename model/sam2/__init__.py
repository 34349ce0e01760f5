"""SAM2 (Segment Anything 2), image path only, with the parameter names of SAM2's checkpoints."""

from model.sam2.sam2 import SAM2

__all__ = ["SAM2"]
