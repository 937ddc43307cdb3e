"""Helpers shared by the tests and the benchmarks: real processes on this machine."""
