"""Tests of the web layer: the pages, the JSON API and its OpenAPI, headers, rate limits."""
