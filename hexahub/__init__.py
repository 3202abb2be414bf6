"""HexaHub: a self-hosted AI workspace and homelab control plane."""

__version__ = "0.1.0"
