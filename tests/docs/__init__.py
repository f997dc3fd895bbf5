"""Tests of the documentation and of the tests' own layout."""
