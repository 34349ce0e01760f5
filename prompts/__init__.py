"""Prompt templates for the LMM drafting stage (one per tier, plus the merge)."""
