"""Renderers: terminal, JSON (the output contract), HTML and Markdown."""
