"""Benchmark suites and the report that turns their JSON into a table and a plot."""
