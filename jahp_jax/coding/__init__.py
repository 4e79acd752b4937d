"""Entropy coding: range-coder tables, the coding loop over a schedule, integer arithmetic, the
.jahp format, the codec."""
