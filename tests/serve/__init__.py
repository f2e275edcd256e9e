"""Tests of ``acorn serve`` (a package so its modules can share helpers)."""
