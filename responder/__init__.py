"""responder: answers DingTalk @-mentions with replies defined in rules.yaml."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("responder")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"
