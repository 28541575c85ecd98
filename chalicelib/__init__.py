"""Sarafan. Before any module defines a dataclass, the compiled code of the methods dataclasses generates is
looked up in the shipped cache (``chalicelib.domain.codecache``: a cold-start cost, ``bench/cold_start.py``)."""

from chalicelib.domain import codecache

codecache.install()
