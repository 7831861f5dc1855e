"""``index.html``: one self-contained review page for a saliency run (no network, opens from disk).

For every scan the page lists prediction, confidence, coverage and peak; for the first
``max_viewers`` scans it shows an interactive NiiVue viewer (scan in gray, saliency in hot,
threshold and opacity sliders) beside the static PNG montage. Everything is inside the file:

- NiiVue (``vendor/niivue.umd.js``, npm ``@niivue/niivue``, BSD-2-Clause) is inlined;
- each viewer's volumes are embedded as base64 of small gzipped 8-bit NIfTI files, built from
  the scan and its map on the scan's own grid (the scan's affine, so NiiVue places them in the
  same world space), block-averaged when larger than ``max_viewer_voxels``. NiiVue cannot fetch
  a URL from ``file://``, so ``NVImage.loadFromBase64`` is used;
- montages of viewer scans are embedded as ``data:`` URIs; further scans link to their PNG and
  NIfTI by relative path (keep the folder together), which keeps a large cohort's page small.

The full-resolution float32 maps are the NIfTI files linked from the table: the viewer's 8-bit
copies are for looking, not for numbers (the viewer threshold is a fraction of each map's peak).

The table shows the true label next to the prediction and marks wrong predictions (rows with
``correct`` == ``false``); warnings (e.g. constant maps) head the page; the sanity checks
(``checks.json``, when given) get their own section with a one-sentence reading of each.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Sequence
from urllib.parse import quote

import numpy as np

from neuro_ssl._utils.files import write_text
from neuro_ssl.report.montage import on_grid

VolumeLoader = Callable[[str], "tuple[np.ndarray, np.ndarray]"]
MAX_VIEWERS = 12  # browsers cap live WebGL contexts (Chrome: 16); each viewer holds one
MAX_VIEWER_VOXELS = 160 ** 3


def vendor_file(name: str) -> str:
    return resources.files("neuro_ssl.report").joinpath("vendor", name).read_text(encoding="utf-8")


def niivue_version() -> str:
    """The vendored NiiVue version (first line of ``vendor/VERSION.txt``)."""
    return vendor_file("VERSION.txt").splitlines()[0].strip()


def write_review_page(out_dir: str | os.PathLike, rows: Sequence[Mapping], load_volume: VolumeLoader,
                      title: str = "Saliency review",
                      notes: Sequence[str] = (), threshold: float = 0.5, opacity: float = 0.6,
                      radiological: bool = False, max_viewers: int = MAX_VIEWERS,
                      max_viewer_voxels: int = MAX_VIEWER_VOXELS, file_name: str = "index.html",
                      warnings: Sequence[str] = (), checks: Mapping | None = None) -> Path:
    """Write ``out_dir/index.html`` for ``rows`` (the summary rows, plus ``montage`` PNG paths).

    Each row needs ``image`` and ``saliency`` (paths; a map on another grid than its scan is
    resampled onto the scan's); ``subject_id``, ``session_id``, ``predicted``, ``true_label``,
    ``correct``, ``confidence``, ``coverage_pct``, ``peak_*_mm`` and ``region_*`` are shown when
    present. ``load_volume(path) -> (array, affine)`` reads the viewer scans
    (``neuro_ssl.data.io.load_volume``; report itself reads no image format). ``warnings`` are
    shown first; ``checks`` is the ``checks.json`` dictionary.
    """
    out_dir = Path(out_dir)
    page = out_dir / file_name
    rows = [dict(r) for r in rows]
    n_viewers = min(len(rows), max(int(max_viewers), 0))
    parts = [_header(title, notes, len(rows), n_viewers, radiological), _warnings(warnings)]
    if checks:
        parts.append(checks_section(checks))
    parts.append(_summary_table(rows, page.parent))
    specs, data_blocks = [], []
    for index, row in enumerate(rows):
        interactive = index < n_viewers
        spec, blocks = _viewer_data(index, row, load_volume, max_viewer_voxels) if interactive else (None, [])
        parts.append(_scan_section(index, row, page.parent, spec, threshold, opacity))
        if spec:
            specs.append(spec)
            data_blocks.extend(blocks)
    config = {"viewers": specs, "threshold": float(threshold), "opacity": float(opacity),
              "radiological": bool(radiological)}
    body = "\n".join(parts + data_blocks)
    template = resources.files("neuro_ssl.report").joinpath("templates", "review.html").read_text(encoding="utf-8")
    values = {"TITLE": html.escape(title), "CONFIG": json.dumps(config).replace("</", "<\\/"),
              "NIIVUE_VERSION": html.escape(niivue_version()), "BODY": body, "NIIVUE": vendor_file("niivue.umd.js")}
    text = re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)  # one pass: no re-expansion
    write_text(page, text)
    return page


# ------------------------------------------------------------------------------ volumes

def viewer_volumes(image: np.ndarray, saliency: np.ndarray, affine: np.ndarray,
                   max_voxels: int = MAX_VIEWER_VOXELS) -> tuple[bytes, bytes, int]:
    """(scan .nii.gz bytes, saliency .nii.gz bytes, block factor): 8-bit copies for the viewer.

    The scan is windowed to its 0.5-99.5 percentiles, the map scaled so its peak is 255.
    Volumes above ``max_voxels`` are block-averaged by an integer factor; the affine follows
    (a block's centre keeps its world position).
    """
    factor = max(1, math.ceil((image.size / max_voxels) ** (1 / 3)))
    if factor > 1:
        image, saliency = _block_mean(image, factor), _block_mean(saliency, factor)
        affine = _block_affine(affine, factor)
    finite = image[np.isfinite(image)]
    lo, hi = (float(v) for v in np.percentile(finite, (0.5, 99.5))) if finite.size else (0.0, 1.0)
    scan_u8 = _to_uint8((np.nan_to_num(image) - lo) / (hi - lo if hi > lo else 1.0))
    peak = float(np.nanmax(saliency)) if saliency.size else 0.0
    map_u8 = _to_uint8(np.nan_to_num(saliency) / peak if peak > 0 else np.zeros_like(saliency))
    return _nifti_gz(scan_u8, affine), _nifti_gz(map_u8, affine), factor


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    shape = [-(-s // factor) * factor for s in volume.shape]
    padded = np.zeros(shape, dtype=np.float32)
    padded[tuple(slice(0, s) for s in volume.shape)] = volume
    x, y, z = (s // factor for s in shape)
    return padded.reshape(x, factor, y, factor, z, factor).mean(axis=(1, 3, 5))


def _block_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    scale = np.diag([factor, factor, factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2.0  # new voxel 0 is the centre of old voxels 0..factor-1
    return np.asarray(affine, dtype=np.float64) @ scale


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(unit, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _nifti_gz(data: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def _viewer_data(index: int, row: Mapping, load_volume: VolumeLoader, max_voxels: int) -> tuple[dict, list[str]]:
    image, affine = load_volume(row["image"])
    saliency, saliency_affine = load_volume(row["saliency"])
    saliency = on_grid(saliency, saliency_affine, np.shape(image), affine)
    scan_gz, map_gz, factor = viewer_volumes(image, saliency, affine, max_voxels)
    vid = f"viewer-{index}"
    spec = {"id": vid, "scan": f"{vid}-scan", "map": f"{vid}-map", "block": factor, "peak_mm": _peak_mm(row)}
    blocks = [_data_block(spec["scan"], scan_gz), _data_block(spec["map"], map_gz)]
    return spec, blocks


def _data_block(element_id: str, payload: bytes) -> str:
    encoded = base64.b64encode(payload).decode("ascii")
    return f'<script type="application/octet-stream" id="{element_id}">{encoded}</script>'


def _peak_mm(row: Mapping) -> list[float] | None:
    values = [row.get(k) for k in ("peak_x_mm", "peak_y_mm", "peak_z_mm")]
    if any(v is None or not _finite(v) for v in values):
        return None
    return [float(v) for v in values]


# ------------------------------------------------------------------------------ html parts

def _header(title: str, notes: Sequence[str], n_rows: int, n_viewers: int, radiological: bool) -> str:
    convention = ("radiological convention (the patient's right on the left)" if radiological
                  else "neurological convention (the patient's left on the left)")
    limit = (f"Interactive viewers for all {n_rows} scans." if n_viewers == n_rows else
             f"Interactive viewers for the first {n_viewers} of {n_rows} scans; the others show their "
             "montage and link to their NIfTI files (keep this folder together).")
    items = [*notes, f"Pictures and viewers use the {convention}.", limit,
             "Viewer volumes are 8-bit copies for display; the linked NIfTI maps hold the values, in each "
             "scan's own space: open them over the scan in FSLeyes, ITK-SNAP, 3D Slicer or NiiVue."]
    lis = "".join(f"<li>{html.escape(str(n))}</li>" for n in items)
    return f'<h1>{html.escape(title)}</h1>\n<ul class="notes muted">{lis}</ul>'


def _summary_table(rows: Sequence[Mapping], base: Path) -> str:
    regions = sorted({k for r in rows for k in r if k.startswith("region_")})
    head = ["#", "subject", "session", "predicted", "true label", "confidence", "coverage %", "peak (x, y, z) mm",
            *[r[len("region_"):] + " share" for r in regions], "map"]
    lines = ["<h2>Scans</h2>", '<div class="table-wrap"><table class="summary"><thead><tr>'
             + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        peak = _peak_mm(row)
        cells = [f'<a href="#scan-{i}">{i + 1}</a>', _esc(row.get("subject_id")), _esc(row.get("session_id")),
                 _esc(row.get("predicted")), _truth_cell(row), _num(row.get("confidence"), 3),
                 _num(row.get("coverage_pct"), 2), "" if peak is None else html.escape(", ".join(f"{v:.1f}" for v in peak)),
                 *[_num(row.get(r), 3) for r in regions], _link(row.get("saliency"), base, "NIfTI")]
        mark = ' class="wrong"' if _verdict(row) == "false" else ""
        lines.append(f"<tr{mark}>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _scan_section(index: int, row: Mapping, base: Path, spec: dict | None, threshold: float, opacity: float) -> str:
    name = " / ".join(str(v) for v in (row.get("subject_id"), row.get("session_id")) if _present(v))
    pred = f"predicted {_esc(row.get('predicted'))}"
    if _finite(row.get("confidence")):
        pred += f" ({float(row['confidence']):.3f})"
    if _present(row.get("true_label")):
        pred += f" · true {_esc(row.get('true_label'))}"
    verdict = {"false": ' <span class="wrong-tag">✗ wrong prediction</span>',
               "true": ' <span class="right-tag">✓ correct</span>'}.get(_verdict(row), "")
    wrong = " wrong" if _verdict(row) == "false" else ""
    parts = [f'<section class="scan{wrong}" id="scan-{index}"><h3>{html.escape(name or f"scan {index + 1}")}'
             f' <span class="muted">· {pred}</span>{verdict}</h3><div class="pair">']
    if spec:
        note = f" (display copy averaged over {spec['block']}³ voxel blocks)" if spec["block"] > 1 else ""
        parts.append(
            f'<div class="viewer" id="{spec["id"]}" data-status="loading"><div class="canvas-box"><canvas></canvas></div>'
            f'<div class="controls"><label>threshold (× peak) <input type="range" class="threshold" min="0" '
            f'max="1" step="0.01" value="{threshold:g}"> <output class="threshold">{threshold:.2f}</output></label>'
            f'<label>opacity <input type="range" class="opacity" min="0" max="1" step="0.01" value="{opacity:g}">'
            f' <output class="opacity">{opacity:.2f}</output></label></div>'
            f'<div class="status">drag to move the crosshair, scroll to change slice, right-drag to adjust '
            f'contrast{html.escape(note)}</div></div>')
    parts.append(f'<div class="montage">{_montage(row.get("montage"), base, embed=spec is not None)}</div>')
    links = [_link(row.get("saliency"), base, "saliency NIfTI"), _link(row.get("image"), base, "scan")]
    parts.append(f'</div><p class="muted">{" · ".join(l for l in links if l)}</p></section>')
    return "".join(parts)


def _verdict(row: Mapping) -> str:
    """``true``/``false`` from the row's ``correct`` (a string or a bool), else empty."""
    value = row.get("correct")
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value).strip().lower() if _present(value) and str(value).strip().lower() in ("true", "false") else ""


def _truth_cell(row: Mapping) -> str:
    truth = _esc(row.get("true_label"))
    verdict = _verdict(row)
    if verdict == "false":
        return f'<td class="wrong-cell">{truth} <span class="wrong-tag" title="wrong prediction">✗ wrong</span></td>'
    if verdict == "true":
        return f'<td>{truth} <span class="right-tag" title="correct prediction">✓</span></td>'
    return f"<td>{truth}</td>"


def _warnings(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return f'<div class="warnings" id="warnings"><strong>Warning</strong><ul>{items}</ul></div>'


def checks_section(checks: Mapping) -> str:
    """The sanity checks (``checks.json``): a reading per check, then its numbers."""
    readings = checks.get("readings") or {}
    parts = ['<section class="checks" id="checks"><h2>Sanity checks</h2>',
             f'<p class="muted">{_esc(checks.get("n_scans"))} scan(s), {_esc(checks.get("method"))}'
             f'{" at " + html.escape(str(checks["layer"])) if checks.get("layer") else ""}, seed '
             f'{_esc(checks.get("seed"))}; on the model grid, over brain voxels. See docs/saliency.md.</p>']
    titles = {"randomization": "Cascading randomization (Adebayo et al., NeurIPS 2018)",
              "localization": "Localization (Arun et al., Radiology: AI 2021)",
              "deletion": "Deletion of the most salient voxels", "repeatability": "Repeatability across seeds"}
    tables = {"randomization": _randomization_table, "localization": _localization_table,
              "deletion": _deletion_table, "repeatability": _repeatability_table}
    for key, title in titles.items():
        if not checks.get(key):
            continue
        parts.append(f'<div class="check" id="check-{key}"><h3>{html.escape(title)}</h3>'
                     f'<p class="reading">{_esc(readings.get(key))}</p>{tables[key](checks[key])}</div>')
    parts.append("</section>")
    return "".join(parts)


def _small_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="summary"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _randomization_table(entries) -> str:
    rows = [[_esc(e.get("stage")), _num(e.get("spearman"), 3), _num(e.get("ssim"), 3), _esc(e.get("constant_maps"))]
            for e in entries]
    return _small_table(["re-initialized down to", "Spearman", "SSIM", "constant maps"], rows)


def _localization_table(regions: Mapping) -> str:
    rows = [[html.escape(str(name)), _num(v.get("share"), 3), _num(v.get("chance"), 3), _num(v.get("gain"), 2),
             _num(v.get("auprc"), 3)] for name, v in regions.items()]
    return _small_table(["region", "share", "chance", "gain", "AUPRC"], rows)


def _deletion_table(deletion: Mapping) -> str:
    rows = [[f"{html.escape(str(k))} %", _sig(v.get("salient_drop")), _sig(v.get("random_drop"))]
            for k, v in deletion.items()]
    return _small_table(["deleted", "drop (most salient)", "drop (random, mean of 5)"], rows)


def _repeatability_table(rep: Mapping) -> str:
    rows = [[_esc(r.get("subject_id")), _esc(r.get("session_id")), _num(r.get("spearman"), 3)]
            for r in rep.get("per_scan", [])]
    mean = f"{float(rep['mean']):.3f}" if _finite(rep.get("mean")) else "undefined"
    return _small_table(["subject", "session", "Spearman"], rows) + f'<p class="muted">mean {mean}</p>'


def _montage(path, base: Path, embed: bool) -> str:
    if not _present(path) or not Path(str(path)).is_file():
        return '<p class="muted">no montage</p>'
    if embed:
        encoded = base64.b64encode(Path(str(path)).read_bytes()).decode("ascii")
        return f'<img alt="montage" src="data:image/png;base64,{encoded}">'
    return f'<img alt="montage" loading="lazy" src="{_relative(path, base)}">'


def _link(path, base: Path, text: str) -> str:
    if not _present(path):
        return ""
    return f'<a href="{_relative(path, base)}">{html.escape(text)}</a>'


def _relative(path, base: Path) -> str:
    rel = os.path.relpath(Path(str(path)).resolve(), base.resolve())
    return html.escape(quote(Path(rel).as_posix()))


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _num(value, digits: int) -> str:
    return f'<td class="num">{float(value):.{digits}f}</td>' if _finite(value) else "<td></td>"


def _sig(value, digits: int = 3) -> str:
    return f'<td class="num">{float(value):.{digits}g}</td>' if _finite(value) else "<td></td>"


def _esc(value) -> str:
    return html.escape(str(value)) if _present(value) else ""
