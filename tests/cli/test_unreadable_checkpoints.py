"""Any unreadable checkpoint, given to any command that loads one, ends in one line naming the file
and what it is; and the command's --out is not created (issue 12, point 4).

Each kind is a real file as a user ends up with it: notes saved as ``.pt``, an empty or cut-short
download, the ``encoder.yaml`` sidecar, a NIfTI image, a zip of other files, a bare state_dict,
and a model.pt where an encoder.pt is asked (and the reverse).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

from neuro_ssl.cli.main import main

_spec = importlib.util.spec_from_file_location(
    "neuro_ssl_tests_tiny_cohort", Path(__file__).resolve().parents[1] / "evaluation" / "tiny_cohort.py")
tc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tc)

#: kind -> words the error line must hold (besides the file's path)
KINDS = {
    "text": ("text file", "first line: 'my notes"),
    "empty": ("empty file", "0 bytes"),
    "truncated": ("truncated or damaged", "again"),
    "sidecar_yaml": ("text file", "meta written beside the weights"),
    "nifti": ("nifti image", "not a neuro-ssl checkpoint"),
    "zip_of_other_files": ("zip archive", "readme.txt"),
    "bare_state_dict": ("bare state_dict", "not a neuro-ssl checkpoint"),
    "other_format": ("found format 'neuro-ssl-",),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A tiny cohort, a good encoder.pt and model.pt, and one bad file per kind and role."""
    import nibabel as nib
    import numpy as np
    import torch

    from neuro_ssl.models import SupervisedModel, load_encoder, save_model

    root = tmp_path_factory.mktemp("bad_checkpoints")
    manifest = tc.write_cohort(root, n_subjects=6)
    encoder_pt = tc.save_random_encoder(root / "good" / "encoder.pt")
    encoder, meta = load_encoder(encoder_pt)
    model_pt = save_model(root / "good" / "model.pt", SupervisedModel(encoder, 2),
                          {**meta, "task": "classification", "label": "diagnosis", "classes": ["CN", "AD"]})

    def bad(kind: str, role: str) -> Path:
        path = root / f"{kind}_{role}" / f"{role}.pt"
        if path.exists():
            return path
        path.parent.mkdir()
        good = encoder_pt if role == "encoder" else model_pt
        if kind == "text":
            path.write_text("my notes on the run\nlr 1e-3\n")
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated":
            data = good.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        elif kind == "sidecar_yaml":
            path.write_text(good.with_suffix(".yaml").read_text())
        elif kind == "nifti":
            nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), root / "scan.nii.gz")
            path.write_bytes((root / "scan.nii.gz").read_bytes())
        elif kind == "zip_of_other_files":
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("readme.txt", "weights are elsewhere")
        elif kind == "bare_state_dict":
            torch.save(encoder.state_dict(), path)
        elif kind == "other_format":  # a model where an encoder is asked, and the reverse
            path.write_bytes((model_pt if role == "encoder" else encoder_pt).read_bytes())
        return path

    return {"root": root, "manifest": manifest, "bad": bad}


def _argv(command: str, bad: Path, manifest: Path, out: Path) -> list[str]:
    common = ["--manifest", str(manifest), "--out", str(out)]
    if command == "finetune":
        return ["finetune", *common, "--encoder", str(bad), "--mode", "linear", "--classes", "CN,AD", "--device", "cpu"]
    if command == "embed":
        return ["embed", "--encoder", str(bad), "--manifest", str(manifest), "--out", str(out / "e.csv"), "--device", "cpu"]
    if command == "embed_run":
        return ["embed", "--run", str(bad.parent), "--manifest", str(manifest), "--out", str(out / "e.csv")]
    if command == "evaluate":
        return ["evaluate", "--run", str(bad.parent), *common, "--device", "cpu"]
    if command == "saliency":
        return ["saliency", "--run", str(bad), *common, "--device", "cpu"]
    if command == "audit":
        return ["audit", str(manifest), "--out", str(out), "--label", "diagnosis", "--run", str(bad)]
    raise ValueError(command)


ROLE = {"finetune": "encoder", "embed": "encoder", "embed_run": "model", "evaluate": "model", "saliency": "model",
        "audit": "model"}


#: audit reads the preprocessing of an encoder.pt or a model.pt: both formats are right for it
CASES = [pytest.param(command, kind, id=f"{command}-{kind}") for command in ROLE for kind in KINDS
         if (command, kind) != ("audit", "other_format")]


@pytest.mark.parametrize(("command", "kind"), CASES)
def test_one_line_naming_the_file_and_what_it_is(files, tmp_path, command, kind):
    bad = files["bad"](kind, ROLE[command])
    out = tmp_path / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(_argv(command, bad, files["manifest"], out))
    name = command.split("_")[0]
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 1, (code, lines)
    assert len(lines) == 1 and lines[0].startswith(f"neuro-ssl {name}: error: {bad}: "), lines
    for words in KINDS[kind]:
        assert words.lower() in lines[0].lower(), (words, lines[0])
    assert not out.exists(), f"{name} left {sorted(out.rglob('*'))} behind"
