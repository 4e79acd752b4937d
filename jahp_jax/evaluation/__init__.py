"""Evaluation from real files, classical codecs, BD-rates and plots."""
