"""nodeswap: replace the Kubernetes worker nodes behind an AWS Auto Scaling group without downtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nodeswap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

USER_AGENT = f"nodeswap/{__version__}"
