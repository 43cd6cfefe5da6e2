"""responder: answers DingTalk @-mentions with replies defined in rules.yaml."""

from importlib.metadata import PackageNotFoundError, version

# The distribution is `dingtalk-responder` (the name `responder` on PyPI is another project); the
# import package and the command stay `responder`.
DISTRIBUTION = "dingtalk-responder"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"
