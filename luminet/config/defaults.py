"""Default configuration of the classification distiller.

Every key a YAML file or a command-line override may set is declared here (plus one section per
loss registered by a third party, see :func:`luminet.config.get_cfg`); anything else is an
error. Layout and names follow the official LumiNet / mdistiller configs where they overlap.

A loss section (``KD``, ``DKD``, ``LUMINET``, ...) holds the trainer's keys of that loss
(:data:`TRAINER_KEYS`) and the loss's keyword arguments in upper case, except the official names
renamed by :data:`LOSS_KEY_ALIASES` (see :mod:`luminet.losses.config` for the rule).
"""

from fvcore.common.config import CfgNode as CN

__all__ = ["DEFAULTS", "TRAINER_KEYS", "LOSS_KEY_ALIASES", "NEW_LOSS_SECTION_DEFAULTS"]

#: Keys of a loss section read by the trainer, not passed to the loss: the cross-entropy weight,
#: the warm-up in epochs and KD's weight of the distillation term.
TRAINER_KEYS = ("CE_WEIGHT", "WARMUP", "KD_WEIGHT")
#: The official configs' key names that are not the loss's keyword argument in upper case.
LOSS_KEY_ALIASES = {"T": "temperature"}
#: Trainer keys of the section added for a loss registered by a third party.
NEW_LOSS_SECTION_DEFAULTS = {"CE_WEIGHT": 1.0, "WARMUP": 0}

_C = CN()

# Free-form bookkeeping copied from the official configs; only NAME is used (run directory name).
_C.EXPERIMENT = CN()
_C.EXPERIMENT.NAME = ""
_C.EXPERIMENT.TAG = ""
_C.EXPERIMENT.PROJECT = ""

# Where checkpoints, metrics.jsonl, TensorBoard events and the frozen config go.
_C.OUTPUT_DIR = "output/cls/default"
_C.SEED = 0
# "auto" picks cuda when available, else cpu; or an explicit torch device string ("cpu", "cuda:0").
_C.DEVICE = "auto"
# torch.use_deterministic_algorithms(True) plus cudnn.deterministic (slower on GPU).
_C.DETERMINISTIC = False
# torch.set_num_threads for the CPU work of this process (0 = leave torch's default).
_C.NUM_THREADS = 0

_C.DATASET = CN()
# One of luminet.data.available_datasets(): "cifar100", "imagenet", "digits", "digit_crops".
_C.DATASET.TYPE = "cifar100"
_C.DATASET.ROOT = "datasets/cifar100"
# torchvision download=True for CIFAR-100 (needs internet once).
_C.DATASET.DOWNLOAD = False
_C.DATASET.NUM_WORKERS = 2
# Digits only: side length the 8x8 images are resized to, fraction held out for validation and
# the seed of that (stratified) split; the split does not depend on SEED.
_C.DATASET.IMAGE_SIZE = 16
_C.DATASET.VAL_FRACTION = 0.2
_C.DATASET.SPLIT_SEED = 0
# Digit crops only (DATASET.TYPE "digit_crops"; IMAGE_SIZE, VAL_FRACTION and SPLIT_SEED above
# apply too, and the rendered crops are cached under DATASET.ROOT): crops per split and the
# fraction of each class's digit scans reserved for the test split.
_C.DATASET.DIGIT_CROPS = CN()
_C.DATASET.DIGIT_CROPS.NUM_TRAIN = 4000
_C.DATASET.DIGIT_CROPS.NUM_VAL = 1000
_C.DATASET.DIGIT_CROPS.NUM_TEST = 2000
_C.DATASET.DIGIT_CROPS.TEST_FRACTION = 0.2
# Train on the first TRAIN_SUBSET train crops only (0 = all): a student with little labelled data
# next to a teacher trained on all of them. Normalisation statistics always use all train crops.
_C.DATASET.DIGIT_CROPS.TRAIN_SUBSET = 0
_C.DATASET.TEST = CN()
_C.DATASET.TEST.BATCH_SIZE = 64

_C.DISTILLER = CN()
# "none" (plain cross-entropy), "kd", "dkd", "luminet", or any name registered with
# luminet.losses.register_distill_loss that has a config section of the same (upper-case) name.
_C.DISTILLER.TYPE = "none"
_C.DISTILLER.STUDENT = "resnet8x4"
# One teacher by name (official configs), or several in TEACHERS (logit-averaging ensemble);
# set one of the two, not both.
_C.DISTILLER.TEACHER = ""
_C.DISTILLER.TEACHERS = []
# One checkpoint path per teacher, in order. Required whenever a distillation loss is used.
_C.DISTILLER.TEACHER_WEIGHTS = []
# Optional initial weights of the student.
_C.DISTILLER.STUDENT_WEIGHTS = ""

_C.SOLVER = CN()
_C.SOLVER.TYPE = "SGD"
_C.SOLVER.BATCH_SIZE = 64  # total over all processes
_C.SOLVER.EPOCHS = 240
_C.SOLVER.LR = 0.05
_C.SOLVER.LR_DECAY_STAGES = [150, 180, 210]
_C.SOLVER.LR_DECAY_RATE = 0.1
_C.SOLVER.WEIGHT_DECAY = 0.0005
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False

# Mixed precision (torch.amp) on CUDA; on other devices a logged no-op.
_C.AMP = CN()
_C.AMP.ENABLED = False

# Plain training (DISTILLER.TYPE "none").
_C.NONE = CN()
_C.NONE.CE_WEIGHT = 1.0

# Hinton KD, mdistiller defaults: loss = CE_WEIGHT * CE + warm-up * KD_WEIGHT * KD(T).
_C.KD = CN()
_C.KD.TEMPERATURE = 4.0
_C.KD.CE_WEIGHT = 0.1
_C.KD.KD_WEIGHT = 0.9
_C.KD.WARMUP = 0  # epochs; 0 = no warm-up (as mdistiller's KD)

# DKD, mdistiller defaults: loss = CE_WEIGHT * CE + min(epoch / WARMUP, 1) * DKD(ALPHA, BETA, T).
_C.DKD = CN()
_C.DKD.CE_WEIGHT = 1.0
_C.DKD.ALPHA = 1.0
_C.DKD.BETA = 8.0
_C.DKD.T = 4.0
_C.DKD.WARMUP = 20

# LumiNet: loss = CE_WEIGHT * CE + min(epoch / WARMUP, 1) * ALPHA^2 * KL(perception, T).
# Defaults of the official code (its mdistiller/engine/cfg.py: SOLVER.CE_WEIGHT 2.0,
# SOLVER.ALPHA 31.0, SOLVER.T 4.0, LUMINET.WARMUP 20); every shipped config sets its own values.
_C.LUMINET = CN()
_C.LUMINET.CE_WEIGHT = 2.0
_C.LUMINET.ALPHA = 31.0
_C.LUMINET.T = 4.0
_C.LUMINET.WARMUP = 20
_C.LUMINET.EPS = 1e-5

_C.LOG = CN()
_C.LOG.TENSORBOARD = True
_C.LOG.PROGRESS_BAR = True
# Also keep a student snapshot every N epochs (0 = only last/best).
_C.LOG.SAVE_CHECKPOINT_FREQ = 0

#: The defaults (do not modify: :func:`luminet.config.get_cfg` returns a copy).
DEFAULTS = _C
