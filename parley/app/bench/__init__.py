"""Benchmarks run by `parley bench ...`: each module exposes ``main(argv)``."""
