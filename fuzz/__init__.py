"""Atheris harnesses for passgate's parsers (run them with ``python -m fuzz.run_all``)."""
