"""``neuro-ssl saliency --checks``: the sanity checks of :mod:`~neuro_ssl.interpret.checks` over a
cohort, averaged over scans, with a one-sentence reading of each, written to ``checks.json``.

``checks.json`` keys:

- ``randomization``: list of ``{"stage", "spearman", "ssim", "constant_maps"}``, head first, the
  last entry fully randomized; means over scans (``constant_maps``: scans whose randomized map
  was constant, counted as Spearman 0);
- ``localization`` (with regions): ``{region: {"share", "chance", "gain", "auprc", "n_scans"}}``,
  share, chance and AUPRC averaged over scans, ``gain`` = share / chance of those means;
- ``deletion``: ``{"1": {"salient_drop", "random_drop"}, "2": ..., "5": ..., "10": ..., "20": ...}``;
- ``repeatability`` (with a second model): ``{"compare_run", "per_scan": [{"subject_id",
  "session_id", "spearman"}], "mean"}``;
- ``n_scans``, ``method``, ``layer``, ``seed``, ``warnings`` and ``readings`` ({check: sentence}).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from neuro_ssl._utils.files import write_json
from neuro_ssl.interpret import checks as C
from neuro_ssl.interpret.gradcam import SaliencyResult, compute_saliency, is_constant

#: Spearman at full randomization below which maps count as depending on the weights (issue goal)
PASS_SPEARMAN, FAIL_SPEARMAN = 0.3, 0.5
NEGLIGIBLE_DROP = 0.005  # a change of the explained probability too small to read


class CohortChecks:
    """Accumulates the checks scan by scan (:meth:`add`), then :meth:`result` / :meth:`write`.

    ``compare``: ``(model, label)`` of a second model (same preprocessing and classes, another
    training seed) for repeatability. The randomized copies of ``model`` are built once, on the
    first scan, and reused for every scan (same seed: the same randomized weights everywhere).
    """

    def __init__(self, model, meta: Mapping, method: str = "gradcam", n_steps: int = 16, seed: int = 0,
                 compare: tuple | None = None):
        self.model, self.meta, self.method, self.n_steps, self.seed = model, meta, method, n_steps, int(seed)
        self.compare = compare
        self.randomized: list | None = None
        self.layer: str | None = None
        self.rand: dict[str, dict[str, list]] = {}
        self.local: dict[str, dict[str, list]] = {}
        self.deletion: dict[str, dict[str, list]] = {}
        self.repeat: list[dict] = []
        self.n_scans = 0

    def _map(self, model, image, result: SaliencyResult) -> np.ndarray:
        task = self.meta.get("task", "classification")
        return compute_saliency(model, image, method=self.method, layer=result.layer, target=result.target,
                                classes=self.meta.get("classes"), task=task, n_steps=self.n_steps).map

    def add(self, ids: tuple[str, str], pre, result: SaliencyResult, regions: Mapping[str, np.ndarray] = (),
            brain: np.ndarray | None = None) -> None:
        """One scan: ``pre`` (its preprocessed volume), ``result`` (the trained model's map on the
        model grid), ``regions`` ({name: bool mask on the model grid}), ``brain`` (default
        :func:`~neuro_ssl.interpret.checks.brain_on_model_grid`)."""
        brain = C.brain_on_model_grid(pre) if brain is None else np.asarray(brain, dtype=bool)
        self.layer, self.n_scans = result.layer, self.n_scans + 1
        if self.randomized is None:
            self.randomized = C.cascading_randomization(self.model, seed=self.seed)
        for stage, model in self.randomized:
            randomized = self._map(model, pre.image, result)
            entry = self.rand.setdefault(stage, {"spearman": [], "ssim": [], "constant": []})
            entry["spearman"].append(C.spearman_in_brain(result.map, randomized, brain))
            entry["ssim"].append(C.map_ssim(result.map, randomized))
            entry["constant"].append(is_constant(randomized[brain]))
        for name, mask in dict(regions).items():
            entry = self.local.setdefault(name, {"share": [], "chance": [], "auprc": []})
            for key, value in C.localization(result.map, mask, brain).items():
                if key in entry:
                    entry[key].append(value)
        drops = C.deletion_drops(self.model, pre.image, result.map, brain, self._target_index(result),
                                 C.background_values(pre), seed=self.seed + self.n_scans,
                                 task=self.meta.get("task", "classification"))
        for k, values in drops.items():
            entry = self.deletion.setdefault(k, {"salient_drop": [], "random_drop": []})
            for key, value in values.items():
                entry[key].append(value)
        if self.compare is not None:
            other = self._map(self.compare[0], pre.image, result)
            self.repeat.append({"subject_id": ids[0], "session_id": ids[1],
                                "spearman": C.spearman_in_brain(result.map, other, brain)})

    def _target_index(self, result: SaliencyResult) -> int:
        names = [str(c) for c in (self.meta.get("classes") or [])]
        if self.meta.get("task", "classification") == "regression":
            return 0
        return names.index(result.target) if result.target in names else int(result.target)

    def result(self, warnings: list[str] = ()) -> dict:
        """The ``checks.json`` dictionary (NaN where a value is undefined)."""
        out: dict = {"n_scans": self.n_scans, "method": self.method, "layer": self.layer, "seed": self.seed}
        out["randomization"] = [
            {"stage": stage, "spearman": _mean(v["spearman"]), "ssim": _mean(v["ssim"]),
             "constant_maps": int(np.sum(v["constant"]))} for stage, v in self.rand.items()]
        if self.local:
            out["localization"] = {}
            for name, v in self.local.items():
                share, chance = _mean(v["share"]), _mean(v["chance"])
                out["localization"][name] = {"share": share, "chance": chance,
                                             "gain": share / chance if chance > 0 else math.nan,
                                             "auprc": _mean(v["auprc"]), "n_scans": int(np.isfinite(v["share"]).sum())}
        out["deletion"] = {k: {key: _mean(values) for key, values in v.items()} for k, v in self.deletion.items()}
        if self.compare is not None:
            out["repeatability"] = {"compare_run": str(self.compare[1]), "per_scan": self.repeat,
                                    "mean": _mean([r["spearman"] for r in self.repeat])}
        out["warnings"] = list(warnings)
        out["readings"] = readings(out, target=_target_phrase(self.meta),
                                   regression=self.meta.get("task", "classification") == "regression")
        return out

    def write(self, out_dir: str | os.PathLike, warnings: list[str] = ()) -> tuple[Path, dict]:
        """Write ``out_dir/checks.json`` (NaN written as null); returns its path and the dict."""
        data = self.result(warnings)
        path = Path(out_dir) / "checks.json"
        write_json(path, _json_safe(data))
        return path, data


def readings(checks: Mapping, target: str = "the probability of the explained class",
             regression: bool = False) -> dict[str, str]:
    """One sentence per check saying what its numbers mean (regression: deletion compares the
    size of the change, as removing evidence can move a predicted value either way)."""
    out = {}
    if checks.get("randomization"):
        out["randomization"] = _read_randomization(checks["randomization"][-1])
    if checks.get("localization"):
        out["localization"] = _read_localization(checks["localization"])
    deletion = checks.get("deletion") or {}
    if "5" in deletion:
        out["deletion"] = _read_deletion(deletion["5"], target, regression)
    if checks.get("repeatability"):
        out["repeatability"] = _read_repeatability(checks["repeatability"])
    return out


def _read_randomization(last: Mapping) -> str:
    rho, ssim = last.get("spearman"), last.get("ssim")
    if not _finite(rho):
        return ("Undefined: the trained maps are constant, so there is no ranking to compare; "
                "explain a layer with a finer grid.")
    said = f"With every weight re-initialized the maps keep a rank correlation of {rho:.2f} (SSIM {ssim:.2f}) with the trained maps"
    if rho < PASS_SPEARMAN:
        return said + ": they depend on what the model learned, as an explanation must."
    if rho < FAIL_SPEARMAN:
        return said + ": part of each map comes from the input or the architecture, not from the learned weights."
    return (said + ": the maps barely depend on the learned weights, so they show the input or the architecture, "
            "not what the model learned (Adebayo et al. 2018); do not read them as explanations.")


def _read_localization(local: Mapping) -> str:
    rows = [(name, v) for name, v in local.items() if _finite(v.get("gain"))]
    if not rows:
        return "Undefined: no map had saliency inside the brain, or the regions hold no brain voxel."
    name, best = max(rows, key=lambda r: r[1]["gain"])
    said = (f"The maps put {best['gain']:.1f}x the chance share of their saliency in {name} "
            f"({100 * best['share']:.1f} % against {100 * best['chance']:.1f} %; AUPRC {best['auprc']:.2f} against "
            f"{best['chance']:.2f} by chance)")
    below = [n for n, v in rows if v["gain"] < 1]
    return said + (f"; below chance in {', '.join(below)}." if below else ".")


def _read_deletion(at5: Mapping, target: str, regression: bool = False) -> str:
    salient, random = at5.get("salient_drop"), at5.get("random_drop")
    if not (_finite(salient) and _finite(random)):
        return "Undefined: the deletion could not be measured."
    verb = "changes" if regression else "lowers"
    said = (f"Deleting the 5 % most salient brain voxels {verb} {target} by {salient:.3g}, against {random:.3g} "
            f"for 5 % random brain voxels")
    if max(abs(salient), abs(random)) < NEGLIGIBLE_DROP:
        return (said + f": both under {NEGLIGIBLE_DROP:g}, so the output rests on no 5 % of the brain (or the "
                "probability is saturated) and this check cannot tell salient voxels from random ones.")
    if (abs(salient) > abs(random)) if regression else (salient > random):
        return said + ": the salient voxels matter more to the model than random ones."
    return said + ": no more than random voxels, so the maps do not point at what the model uses."


def _read_repeatability(rep: Mapping) -> str:
    values = [r["spearman"] for r in rep.get("per_scan", []) if _finite(r.get("spearman"))]
    if not values:
        return "Undefined: the maps of one of the two models are constant."
    said = (f"Maps of the model trained with another seed correlate at Spearman {np.mean(values):.2f} on average "
            f"(from {min(values):.2f} to {max(values):.2f})")
    if np.mean(values) >= FAIL_SPEARMAN:
        return said + ": the maps are a stable property of the data and the recipe."
    return said + ": much of each map depends on the training seed; read single maps with care."


def _target_phrase(meta: Mapping) -> str:
    if meta.get("task", "classification") == "regression":
        return "the predicted value"
    return "the probability of the explained class"


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if values.size and np.isfinite(values).any() else math.nan


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
