"""Readers: evidence files to typed records, streaming, with no judgement."""
