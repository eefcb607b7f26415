"""Benchmarks driving the trainer, compiler and runtime; results under benchmarks/results/<device>/."""
