"""Config keys for the backbones in this package."""

from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_mobilenetv2_config"]


def add_mobilenetv2_config(cfg: CN) -> CN:
    """Add the ``MODEL.MOBILENETV2`` keys (with defaults) to a detectron2 config, in place.

    Which stages are frozen is detectron2's own ``MODEL.BACKBONE.FREEZE_AT`` (0: train all; 1:
    freeze the stem; k >= 2: also res2 .. res{k}), as for ResNets: there is no second key.

    Keys that already exist keep their value, so calling this twice (or after a config file was
    merged) changes nothing.

    Args:
        cfg: a detectron2 config, not frozen.

    Returns:
        The same config, for chaining.
    """
    if cfg.is_frozen():
        raise ValueError("add_mobilenetv2_config needs an unfrozen config; call it before freeze()")
    if "MOBILENETV2" not in cfg.MODEL:
        cfg.MODEL.MOBILENETV2 = CN()
    node = cfg.MODEL.MOBILENETV2
    defaults = {
        # Channel multiplier for every layer (torchvision's ``width_mult``); ImageNet weights
        # from torchvision exist for 1.0 only.
        "WIDTH_MULT": 1.0,
        # Normalization: "FrozenBN" (for pretrained weights), "BN" (random init / large
        # batches) or "SyncBN" (multi-GPU). GroupNorm does not fit the 16/24-channel layers.
        "NORM": "FrozenBN",
        # Features returned by the bottom-up network: any of stem, res2, res3, res4, res5
        # (strides 2, 4, 8, 16, 32).
        "OUT_FEATURES": ["res2", "res3", "res4", "res5"],
        # Append the final 1x1 conv (320 -> 1280 at width 1.0, torchvision's features[18]) to
        # res5, so res5 has 1280 channels; False gives a 320-channel res5.
        "LAST_CONV": True,
    }
    for key, value in defaults.items():
        if key not in node:
            node[key] = value
    return cfg
