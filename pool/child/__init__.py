"""A pool child's side: it takes one job at a time over its pipe, runs it and reports. Nothing
here imports the supervisor's side (tests/test_layers.py holds it)."""
