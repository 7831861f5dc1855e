"""CLIP-style pretraining objectives: each scan aligned with its own clinical data.

``--loss clip``: the projection z of each augmented view and the clinical embedding of the same
row (``--clinical`` columns, ``--text`` report) are pulled together, every other row of the batch
pushed apart, by CLIP's symmetric InfoNCE with a learnable temperature (``losses.CLIPLoss``;
Radford et al., ICML 2021, arXiv:2103.00020), averaged over the two views.
``--loss yaware+clip`` / ``simclr+clip``: the view-to-view loss on z plus ``--clip-weight`` times
the same CLIP term on a linear map of z (its own image projection, as SLIP keeps separate heads:
Mu et al., ECCV 2022, arXiv:2112.12750).

Everything trainable or fitted lives in :class:`ClinicalAlignment` (``objective.alignment``): the
clinical encoder, the image projection, the temperature, and as plain extra state the featurizer
fitted on the training rows and the class prototypes (each diagnosis's median clinical profile in
the training rows). It is saved in ``checkpoint.pt``, so ``evaluate-retrieval`` featurizes any
later manifest exactly as training did. Other visits of the same subject in a batch are masked
out of the CLIP softmaxes (neither match nor negative).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuro_ssl.data.clinical import ClinicalFeatures, ClinicalFeaturizer
from neuro_ssl.losses import CLIPLoss
from neuro_ssl.models import ClinicalEncoder
from neuro_ssl.training.objectives import Objective, SimCLR, Step, StepOutput, YAware, register

PROTOTYPE_LABEL = "diagnosis"


class ClinicalAlignment(nn.Module):
    """The clinical side of CLIP pretraining (see the module docstring).

    ``embed_image(z)``: (n, D) image embeddings in the joint space; ``embed_clinical(features)``:
    (n, D) clinical ones; ``prototypes``: ``{"label", "classes", "values", "missing", "n"}`` or {}.
    """

    def __init__(self, featurizer: ClinicalFeaturizer, dim: int, image_projection: bool, prototypes=None):
        super().__init__()
        self.featurizer = featurizer
        self.clinical_encoder = ClinicalEncoder(featurizer.group_widths, dim)
        self.image_projection = nn.Linear(dim, dim) if image_projection else nn.Identity()
        self.loss_fn = CLIPLoss()
        self.prototypes = dict(prototypes or {})

    def get_extra_state(self) -> dict:
        return {"featurizer": self.featurizer.to_dict(), "prototypes": self.prototypes}

    def set_extra_state(self, state: dict) -> None:
        self.featurizer = ClinicalFeaturizer.from_dict(state["featurizer"])
        self.prototypes = dict(state.get("prototypes") or {})

    def embed_image(self, z: torch.Tensor) -> torch.Tensor:
        return self.image_projection(z)

    def embed_clinical(self, features: ClinicalFeatures) -> torch.Tensor:
        device = self.clinical_encoder.fill.device
        return self.clinical_encoder(torch.from_numpy(features.values).to(device),
                                     torch.from_numpy(features.missing).to(device))


def fit_alignment(config, frame: pd.DataFrame, image_projection: bool) -> ClinicalAlignment:
    """Fit the featurizer (and the diagnosis prototypes) on the training rows; build the modules."""
    featurizer = ClinicalFeaturizer(config.clinical, config.text or None).fit(frame)
    features = featurizer.transform(frame)
    _report_missing(features, len(frame))
    return ClinicalAlignment(featurizer, int(config.proj_dims[-1]), image_projection,
                             class_prototypes(featurizer, features, frame))


def class_prototypes(featurizer: ClinicalFeaturizer, features: ClinicalFeatures, frame: pd.DataFrame) -> dict:
    """Each diagnosis's median clinical profile in ``frame`` (plain lists), or {} without a diagnosis column."""
    if PROTOTYPE_LABEL not in frame.columns:
        return {}
    labels = frame[PROTOTYPE_LABEL].astype("string").str.strip()
    classes = sorted({str(v) for v in labels.dropna() if str(v)})
    out = {"label": PROTOTYPE_LABEL, "classes": classes, "values": [], "missing": [], "n": []}
    for name in classes:
        keep = (labels == name).fillna(False).to_numpy(dtype=bool)
        subset = ClinicalFeatures(features.values[keep], features.missing[keep], [])
        values, missing = featurizer.profile(subset)
        out["values"].append([float(v) for v in values])
        out["missing"].append([bool(m) for m in missing])
        out["n"].append(int(keep.sum()))
    return out


def _report_missing(features: ClinicalFeatures, n_rows: int) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    gaps = [f"{name} in {count}" for name, count in features.missing_counts.items() if count]
    if gaps:
        print(f"neuro-ssl pretrain: {n_rows} training scan(s); missing clinical values are kept (flagged, with a "
              f"learned fill): {', '.join(gaps)} scan(s)", file=sys.stderr)


class _ClipObjective(Objective):
    """Shared part: the training rows' clinical features, looked up by ``batch["index"]``, and the CLIP term."""

    image_projection = False

    def __init__(self, config, data):
        super().__init__(config, data)
        frame = data.frame
        self.alignment = fit_alignment(config, frame, self.image_projection)
        features = self.alignment.featurizer.transform(frame)
        self._position = {row: i for i, row in enumerate(features.rows)}
        self._values = torch.from_numpy(features.values)
        self._missing = torch.from_numpy(features.missing)
        subjects = frame["subject_id"].astype(str) if "subject_id" in frame else pd.Series(np.arange(len(frame)))
        self._groups = torch.from_numpy(pd.factorize(subjects, sort=True)[0].astype(np.float64))

    def clip_term(self, step: Step, z: torch.Tensor) -> torch.Tensor:
        """CLIP loss of both views' (2B, D) ``z`` against the batch rows' clinical embeddings."""
        self.alignment.loss_fn.clamp_()
        where = torch.tensor([self._position[int(r)] for r in step.batch["index"]])
        clinical = self.alignment.clinical_encoder(self._values[where].to(step.device),
                                                   self._missing[where].to(step.device))
        groups = self._groups[where].to(step.device)
        image1, image2 = self.alignment.embed_image(z).chunk(2)
        loss_fn = self.alignment.loss_fn
        return 0.5 * (loss_fn(image1, clinical, groups=groups) + loss_fn(image2, clinical, groups=groups))

    def _logs(self, clip: torch.Tensor) -> dict[str, float]:
        return {"clip": float(clip.detach()), "clip_temperature": float(1.0 / self.alignment.loss_fn.logit_scale.detach())}


@register("clip")
class CLIP(_ClipObjective):
    """Scans aligned with their clinical data only (CLIP's loss on the projection z)."""

    def forward(self, step: Step) -> StepOutput:
        _, z = step.encode()
        clip = self.clip_term(step, z)
        return StepOutput(clip, logs=self._logs(clip))


class _Hybrid(_ClipObjective):
    """A view-to-view loss on z plus ``clip_weight`` x the CLIP term on a linear map of z."""

    image_projection = True
    pair_objective: type = SimCLR

    def __init__(self, config, data):
        super().__init__(config, data)
        self.pair = self.pair_objective(config, data)

    def forward(self, step: Step) -> StepOutput:
        _, z = step.encode()
        z1, z2 = z.chunk(2)
        pair = self.pair.pair(z1, z2, step.y, None)
        clip = self.clip_term(step, z)
        return StepOutput(pair + float(self.config.clip_weight) * clip,
                          logs={"pair": float(pair.detach()), **self._logs(clip)})


@register("yaware+clip")
class YAwareCLIP(_Hybrid):
    """y-Aware InfoNCE on ``--meta`` + ``--clip-weight`` x CLIP."""

    pair_objective = YAware


@register("simclr+clip")
class SimCLRCLIP(_Hybrid):
    """SimCLR NT-Xent + ``--clip-weight`` x CLIP."""

    pair_objective = SimCLR


def alignment_from_state(config, model_state: dict, prefix: str = "extras.objective.alignment.") -> ClinicalAlignment | None:
    """The trained :class:`ClinicalAlignment` of a checkpoint's model state, or None when the run has none."""
    state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    if "_extra_state" not in state:
        return None
    extra = state["_extra_state"]
    featurizer = ClinicalFeaturizer.from_dict(extra["featurizer"])
    alignment = ClinicalAlignment(featurizer, int(config.proj_dims[-1]), "image_projection.weight" in state,
                                  extra.get("prototypes"))
    alignment.load_state_dict(state, strict=True)
    return alignment.eval()
