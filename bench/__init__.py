"""Benchmarks on the lab (issue 6): run each as `.venv/bin/python bench/<name>.py`."""
