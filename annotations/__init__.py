"""Annotation drawing helpers (set-of-marks)."""
