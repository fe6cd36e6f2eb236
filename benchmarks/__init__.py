"""Benchmarks of the local stack and the suite: scripts writing JSON and PNGs under reports/benchmarks/."""
