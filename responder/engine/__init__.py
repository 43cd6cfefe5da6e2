"""The engine: which rule answers a message and what it says. No HTTP, no limits, no sending.

`matching` picks the rule, `cooldowns` says whether it may answer now, `rendering` runs the
sandboxed templates, and `answer` fetches the rule's source and renders its reply.
"""
