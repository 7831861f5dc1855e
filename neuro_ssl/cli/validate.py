"""Check every row and image of a manifest and report all problems at once.

Each problem is one line naming the manifest row (its line in the file) and the image file:
missing or unreadable files, truncated .nii.gz, images that are not 3D, NaN/Inf voxels, empty or
constant images, absurd affines, duplicate (subject, session, modality) rows, impossible or
non-numeric ages, unknown sex codes, a subject whose sex or baseline age changes between rows.
Unknown diagnosis values and missing ages are warnings. Exit 0 when there is no error
(warnings allowed), 1 otherwise.

  neuro-ssl validate manifest.csv
  neuro-ssl validate manifest.csv --json > report.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser) -> None:
    parser.add_argument("manifest", type=Path, help="manifest CSV/TSV (any known dialect)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON report instead of lines")
    parser.add_argument("--no-images", action="store_true",
                        help="do not read the images: only check that each file exists (fast)")
    parser.add_argument("--workers", type=_common.positive_int, default=min(4, os.cpu_count() or 1),
                        help="threads reading images")
    parser.add_argument("--diagnoses", type=_common.str_list, default=(), metavar="LIST",
                        help="diagnosis labels this study uses beyond CN/SMC/EMCI/LMCI/MCI/AD (e.g. FTD,PD)")
    _common.add_frames(parser)


def run(args) -> int:
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.validate import validate_manifest
    from neuro_ssl.errors import ManifestError

    try:
        df = read_manifest(args.manifest)
    except ManifestError as exc:
        if not args.json:
            raise
        problem = {"row": None, "file": str(args.manifest), "column": None,
                   "problem": _common.one_line(exc), "severity": "error"}
        print(json.dumps({"source": str(args.manifest), "n_rows": 0, "ok": False,
                          "errors": [problem], "warnings": []}, indent=2))
        return 1
    report = validate_manifest(df, check_images=not args.no_images, workers=args.workers,
                               progress=_common.progress, extra_diagnoses=args.diagnoses, frames=args.frames)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
        print(report.summary())
    return 0 if report.ok else 1
