"""Saliency: maps on the model grid, mapped back onto each scan's own voxel grid, and measured.

- :mod:`~neuro_ssl.interpret.gradcam`: Captum Grad-CAM / Guided Grad-CAM / Integrated Gradients
  on the model grid (``compute_saliency``).
- :mod:`~neuro_ssl.interpret.native`: ``to_native`` (model grid -> source file grid through the two
  affines) and ``write_saliency`` (NIfTI with the scan's affine).
- :mod:`~neuro_ssl.interpret.regions`: region masks and atlases in any space, shares of saliency.
- :mod:`~neuro_ssl.interpret.summary`: coverage, peak, the summary table, the group mean.
- :mod:`~neuro_ssl.interpret.cohort`: all of it for every scan of a manifest (``explain_cohort``).
- :mod:`~neuro_ssl.interpret.checks`: sanity checks of a map (cascading randomization,
  localization, deletion, repeatability; Adebayo et al. 2018, Arun et al. 2021) on the model grid.
- :mod:`~neuro_ssl.interpret.sanity`: those checks over a cohort, ``checks.json`` and its readings.

Submodules are imported on use: ``native`` and ``regions`` need no torch.
"""
