"""Import an export (ADNI, ClinicaDL, BIDS or any CSV) as a canonical manifest; label progression.

Images are joined to table rows by identifiers, never by row order; everything left unmatched
is reported (counts and the first few). The manifest is written with image paths relative to
its own folder. Check it next with `neuro-ssl validate`. `progression` labels each MCI
subject's baseline scan pMCI / sMCI / unknown at a horizon (docs/manifests.md).

  neuro-ssl manifest import adni --images ADNI/ --csv idaSearch.csv --out manifest.csv
  neuro-ssl manifest import adni --images ADNI/ --csv ADNIMERGE.csv --out manifest.csv
  neuro-ssl manifest import clinicadl --tsv labels.tsv --caps CAPS/ --out manifest.csv
  neuro-ssl manifest import bids --root bids/ --out manifest.csv
  neuro-ssl manifest import csv --csv scans.csv --columns subject_id=ID,image=scan,age=AgeYears --out manifest.csv
  neuro-ssl manifest progression manifest.csv --out progression.csv --horizon 36
"""

from __future__ import annotations

import sys
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="{import,progression}", required=True)
    importer = actions.add_parser("import", allow_abbrev=False, help="import an export as a canonical manifest",
                                  formatter_class=_common.HelpFormatter)
    dialects = importer.add_subparsers(dest="dialect", metavar="{adni,clinicadl,bids,csv}", required=True)

    adni = _dialect(dialects, "adni", "IDA download folder + IDA search CSV or ADNIMERGE, matched by Image Data ID")
    adni.add_argument("--images", type=Path, required=True, metavar="DIR", help="folder searched recursively for images")
    adni.add_argument("--csv", type=Path, required=True, help="IDA search CSV ('Image Data ID') or ADNIMERGE ('IMAGEUID')")

    clinicadl = _dialect(dialects, "clinicadl", "participant/session TSV + CAPS folder")
    clinicadl.add_argument("--tsv", type=Path, required=True, help="TSV with participant_id and session_id columns")
    clinicadl.add_argument("--caps", type=Path, required=True, metavar="DIR", help="CAPS folder (holds subjects/)")
    clinicadl.add_argument("--pattern", default="t1_linear/*_T1w.nii*",
                           help="glob inside each CAPS session folder (cropped image preferred when two match)")
    clinicadl.add_argument("--modality", default=None, help="modality of the images (default: from the file names)")

    bids = _dialect(dialects, "bids", "BIDS dataset: participants.tsv + sub-*/[ses-*/]anat|pet")
    bids.add_argument("--root", type=Path, required=True, metavar="DIR", help="BIDS dataset folder")
    bids.add_argument("--suffixes", type=_common.str_list, default=("T1w", "pet"),
                      help="BIDS suffixes to import, comma separated (pet files go to pet/, others to anat/)")
    bids.add_argument("--session-age", choices=("participants", "missing"), default="participants",
                      help="a session of a subject with several sessions whose sessions.tsv gives no age: take "
                           "participants.tsv's single age (the same for every session; reported) or leave it missing")
    bids.add_argument("--run", choices=("first", "last", "all"), default="first",
                      help="several runs of one suffix in a session (run-1, run-2): keep the first or last run "
                           "number, or all (the run column tells them apart)")

    plain = _dialect(dialects, "csv", "any CSV/TSV with an explicit column mapping")
    plain.add_argument("--csv", type=Path, required=True, help="the table")
    plain.add_argument("--columns", required=True, metavar="ROLE=NAME,...",
                       help="canonical role=column pairs, e.g. subject_id=ID,image=scan,age=AgeYears")
    plain.add_argument("--image-root", type=Path, default=None, metavar="DIR",
                       help="folder that relative image paths start from; without it, the table's folder")


    _add_progression(actions)


def _add_progression(actions) -> None:
    helptext = "label each MCI subject's baseline scan pMCI / sMCI / unknown at a horizon, from its visits"
    sub = actions.add_parser("progression", allow_abbrev=False, help=helptext, description=helptext, formatter_class=_common.HelpFormatter)
    sub.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest with one row per scan and visit")
    sub.add_argument("--out", type=Path, required=True, metavar="OUT",
                     help="manifest to write, with 'progression' and 'years_from_baseline' columns; "
                          "OUT_subjects.csv and OUT_summary.csv beside it")
    sub.add_argument("--horizon", type=_common.positive_float, default=36.0, metavar="MONTHS",
                     help="time horizon after the baseline scan, in months")
    sub.add_argument("--from", dest="from_dx", default="MCI", metavar="DX", help="stage at baseline")
    sub.add_argument("--to", dest="to_dx", default="AD", metavar="DX", help="stage a progressive subject reaches")
    sub.add_argument("--window", type=float, default=0.0, metavar="MONTHS",
                     help="a visit within this many months of the horizon counts as at the horizon")
    sub.add_argument("--time", choices=("auto", "years", "dates", "visits"), default="auto",
                     help="visit times from Years_bl, exam dates (EXAMDATE, Acq Date) or visit codes (m12); "
                          "auto: per subject, the source that times most visits")


def _dialect(dialects, name: str, helptext: str):
    parser = dialects.add_parser(name, allow_abbrev=False, help=helptext, description=helptext, formatter_class=_common.HelpFormatter)
    parser.add_argument("--out", type=Path, required=True, metavar="MANIFEST", help="canonical manifest to write (.csv or .tsv)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any image or table row is left unmatched")
    return parser


def run(args) -> int:
    from neuro_ssl.data.manifest import write_manifest

    if args.action == "progression":
        return _progression(args)
    result = _import(args)
    write_manifest(result.manifest, args.out)
    for note in result.notes:
        print(f"neuro-ssl manifest: note: {note}", file=sys.stderr)
    print(f"wrote {args.out}: {result.summary()}")
    unmatched = result.n_unmatched_images + result.n_unmatched_rows
    return 1 if (args.strict and unmatched) else 0


def _import(args):
    if args.dialect == "adni":
        from neuro_ssl.data.importers.adni import import_adni

        _common.refuse_same_path(args.csv, args.out)
        return import_adni(args.images, args.csv)
    if args.dialect == "clinicadl":
        from neuro_ssl.data.importers.clinicadl import import_clinicadl

        _common.refuse_same_path(args.tsv, args.out)
        return import_clinicadl(args.tsv, args.caps, args.pattern, args.modality)
    if args.dialect == "bids":
        from neuro_ssl.data.importers.bids import import_bids

        return import_bids(args.root, tuple(args.suffixes), session_age=args.session_age, run=args.run)
    from neuro_ssl.data.importers.csv import import_csv, parse_column_mapping

    _common.refuse_same_path(args.csv, args.out)
    return import_csv(args.csv, parse_column_mapping(args.columns), args.image_root)


def _progression(args) -> int:
    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.data.manifest import read_manifest, write_manifest
    from neuro_ssl.data.progression import label_progression

    _common.refuse_same_path(args.manifest, args.out)
    result = label_progression(read_manifest(args.manifest), args.horizon, args.from_dx, args.to_dx,
                               args.window, args.time)
    out = Path(args.out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    subjects, summary = out.with_name(f"{stem}_subjects.csv"), out.with_name(f"{stem}_summary.csv")
    write_csv(subjects, result.subjects)
    write_csv(summary, result.summary)
    write_manifest(result.manifest, out)
    for note in result.notes:
        print(f"neuro-ssl manifest: note: {note}", file=sys.stderr)
    print(f"{result.labels[0]} / {result.labels[1]} at {args.horizon:g} months ({args.from_dx} -> {args.to_dx}), "
          f"visit times from {result.time_source}:")
    width = max(len(label) for label in result.summary["label"])
    for label, count in zip(result.summary["label"], result.summary["subjects"]):
        print(f"  {label.ljust(width)}  {count}")
    reverted = result.subjects[result.subjects["reversions"] != ""]
    for row in reverted.head(5).itertuples(index=False):
        print(f"  reverted: {row.subject_id}: {row.reversions}")
    if len(reverted) > 5:
        print(f"  ... {len(reverted) - 5} more reverter(s) in {subjects.name}")
    print(f"wrote {out} (label on each subject's baseline scan), {subjects.name}, {summary.name}")
    return 0
