"""The teacher of the R101 -> R18 pair as a LazyConfig: detectron2's model-zoo Faster R-CNN
R101-FPN 3x (``COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml``, 42.0 box AP on COCO val2017).

The model zoo has this detector as a yacs config only; this is the model-zoo LazyConfig
``common/models/mask_rcnn_fpn.py`` with depth 101 and without the mask head, which builds the
same modules (its checkpoint ``model_final_f6e8b1.pkl`` fits it key by key).
"""

from detectron2 import model_zoo

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.freeze_at = 2  # as the yacs config (irrelevant to a frozen teacher)
for key in ("mask_in_features", "mask_pooler", "mask_head"):
    del model.roi_heads[key]
