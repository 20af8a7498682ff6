"""Benchmarks that print a table: `python -m backend.bench NAME --help` (see __main__).

Each benchmark lives in its own module, exposing `add_arguments(parser)` and `main(args)`
for the command line and plain functions (returning dataclass rows) for tests.
"""
