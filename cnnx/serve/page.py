"""The page at ``/`` (filled in below)."""

PAGE = "<!doctype html><title>cnnx</title>"
