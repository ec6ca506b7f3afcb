"""Backbones for students that detectron2 lacks (registered in BACKBONE_REGISTRY at import)."""
