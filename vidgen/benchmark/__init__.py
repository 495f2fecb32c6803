"""Benchmarks of composed configs: parameters, training throughput, sampling time, peak memory
(:mod:`vidgen.benchmark.measure`), and several model configs side by side (:mod:`vidgen.benchmark.compare`).
``python -m vidgen.bench`` is the command-line entry."""
