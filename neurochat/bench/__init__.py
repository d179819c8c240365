"""Benchmarks: `python -m neurochat.bench <name> [options]`.

Each benchmark is one module here exposing `add_arguments(parser)` and `run(args) -> int`; it
compares our implementation with a plain reference on the same inputs, checks that they agree,
and prints the speed ratio on its last line (`--json PATH` saves the numbers).
"""
