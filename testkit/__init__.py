"""Helpers the tests and the benchmarks share: a moto server, the Docker test images, waiting."""
