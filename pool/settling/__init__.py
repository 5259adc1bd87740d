"""Settling and sending: a job's end made an outcome, journaled, delivered and deleted."""
