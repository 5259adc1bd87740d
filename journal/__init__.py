"""The job journal: what this worker finished, kept durably so that it is never run again."""
