"""Configuration of the classification distiller: fvcore CfgNode with ``_BASE_`` inheritance."""

from .config import get_cfg, load_config

__all__ = ["get_cfg", "load_config"]
