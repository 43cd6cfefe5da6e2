"""responder: answers DingTalk @-mentions with replies defined in rules.yaml."""

# The distribution is `dingtalk-responder` (the name `responder` on PyPI is another project); the
# import package and the command stay `responder`.
DISTRIBUTION = "dingtalk-responder"

# Written here as well as in pyproject.toml (tests/test_packaging.py holds them equal): reading it
# from the installed metadata costs every process importlib.metadata, ~0.7 MiB and ~60 ms.
__version__ = "0.1.0"
