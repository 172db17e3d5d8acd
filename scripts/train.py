"""Fine-tune a timm model: ``python scripts/train.py ...``, ``accelerate launch scripts/train.py ...``, or
``torchrun --nproc_per_node 2 scripts/train.py ...`` (run ``--help`` for the flags)."""

import sys

from timm_transfusion.train import main

if __name__ == "__main__":
    sys.exit(main())
