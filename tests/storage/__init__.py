"""Tests of the storage layer: the store, its migrations, no DDL by default."""
