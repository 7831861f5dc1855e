"""neuro-ssl: self-supervised contrastive pretraining for 3D brain MRI and PET.

Stages, one subpackage each: ``data`` (manifests, preprocessing, synthetic cohort),
``models`` and ``losses``, ``training``, ``evaluation``, ``interpret`` (saliency),
``report`` (pages and pictures), ``cli`` (a thin layer over all of them).
"""

__version__ = "0.1.0"
