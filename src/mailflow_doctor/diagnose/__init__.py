"""Checks that turn evidence into findings, correlation across sources, and ranking."""
