"""Verification: drafted records checked against what they claim before curation and release."""
