"""Facts the tool reasons with: status codes, endpoint lists, address arithmetic.

This layer imports nothing else of ours.
"""
