"""Benchmarks of bifrost-async: ``python bench/run.py`` runs them all and prints a table."""
