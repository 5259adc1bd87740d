"""The composition root: settings in, the worker's parts built and wired, a command run."""
