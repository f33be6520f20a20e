"""The analysis layer every detector asks: one walk of the tree, import aliases, def-use, class facts.

Detectors never re-solve "what is this name, really?" themselves; they ask `FileContext`.
"""
