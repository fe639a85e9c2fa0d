"""fame-ray: self-supervised video pretraining with FAME + MoCo on Ray.

FAME: Ding et al., "Motion-aware Contrastive Video Representation Learning via
Foreground-background Merging", CVPR 2022 (arXiv 2109.15130).
"""

__version__ = "0.1.0"
