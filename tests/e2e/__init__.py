"""Tests of whole journeys: the README's first hour, the examples, the benchmarks."""
