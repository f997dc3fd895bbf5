"""Tests of the rules: encryption, validation and address rules."""
