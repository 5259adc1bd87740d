"""Helpers every layer may use: sizes and durations as operators write them, and logging."""
