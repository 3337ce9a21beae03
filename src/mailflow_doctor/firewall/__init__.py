"""Vendor configuration parsers into one policy model, and the one evaluator."""
