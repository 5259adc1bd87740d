"""Receiving and holding: the intake, prefetch, and custody of every message held."""
