"""Checkpoint files: exact round trips, wrapper prefixes, strict loading, and untrusted files refused."""

from __future__ import annotations

import pickle

import pytest
import torch
import yaml

from neuro_ssl.errors import CheckpointError
from neuro_ssl.models import (ENCODER_FORMAT, SupervisedModel, build_encoder, load_encoder, load_model,
                              save_encoder, save_model)


@pytest.fixture()
def encoder():
    torch.manual_seed(0)
    enc = build_encoder("resnet10", in_channels=1, norm="batch", width=0.25)
    with torch.no_grad():  # non-trivial running statistics, so buffers are checked too
        enc.train()(torch.randn(4, 1, 16, 16, 16))
    return enc.eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_encoder_round_trip_is_exact(tmp_path, encoder):
    meta = {"preprocess": {"spacing_mm": [6.0, 6.0, 6.0], "shape": [16, 16, 16]}, "subjects": ["002", "011"]}
    path = save_encoder(tmp_path / "encoder.pt", encoder, meta)
    loaded, got = load_encoder(path)
    _same_weights(encoder, loaded)
    x = torch.randn(2, 1, 16, 16, 16)
    assert torch.equal(encoder(x), loaded(x))
    assert got["arch"] == "resnet10" and got["norm"] == "batch" and got["in_channels"] == 1 and got["width"] == 0.25
    assert got["subjects"] == ["002", "011"] and got["preprocess"]["shape"] == [16, 16, 16]
    sidecar = yaml.safe_load((tmp_path / "encoder.yaml").read_text())
    assert sidecar["format"] == ENCODER_FORMAT and sidecar["arch"] == "resnet10" and sidecar["weights"] == "encoder.pt"
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "state_dict", "meta"}


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped_then_loaded_strictly(tmp_path, encoder, prefix):
    state = {prefix + k: v for k, v in encoder.state_dict().items()}
    meta = {"arch": "resnet10", "in_channels": 1, "norm": "batch", "width": 0.25}
    torch.save({"format": ENCODER_FORMAT, "state_dict": state, "meta": meta}, tmp_path / "e.pt")
    loaded, _ = load_encoder(tmp_path / "e.pt")
    _same_weights(encoder, loaded)


def test_wrapped_module_saves_plain_keys(tmp_path, encoder):
    wrapper = torch.nn.Module()
    wrapper.module = encoder  # what DataParallel / DDP look like
    save_encoder(tmp_path / "e.pt", wrapper.module, {})
    keys = torch.load(tmp_path / "e.pt", weights_only=True)["state_dict"].keys()
    assert not any(k.startswith("module.") for k in keys)


def test_missing_or_extra_weights_fail_loudly(tmp_path, encoder):
    state = dict(encoder.state_dict())
    state.pop(next(iter(state)))
    meta = {"arch": "resnet10", "in_channels": 1, "norm": "batch", "width": 0.25}
    torch.save({"format": ENCODER_FORMAT, "state_dict": state, "meta": meta}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing\.pt: weights do not fit"):
        load_encoder(tmp_path / "missing.pt")
    # the same weights described as another architecture
    torch.save({"format": ENCODER_FORMAT, "state_dict": encoder.state_dict(), "meta": {**meta, "arch": "resnet18"}},
               tmp_path / "arch.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_encoder(tmp_path / "arch.pt")


def test_wrong_kind_of_file_is_named(tmp_path, encoder):
    model = SupervisedModel(encoder, 2)
    save_model(tmp_path / "model.pt", model, {"task": "classification", "classes": ["CN", "AD"]})
    with pytest.raises(CheckpointError, match=r"model\.pt: expected neuro-ssl-encoder/1, found format 'neuro-ssl-model/1'"):
        load_encoder(tmp_path / "model.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain\.pt: .*not a neuro-ssl checkpoint"):
        load_encoder(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "nope.pt")


def test_truncated_file_is_refused(tmp_path, encoder):
    path = save_encoder(tmp_path / "encoder.pt", encoder, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="encoder.pt"):
        load_encoder(path)


def test_model_round_trip(tmp_path, encoder):
    torch.manual_seed(1)
    model = SupervisedModel(encoder, 3, dropout=0.2).eval()
    save_model(tmp_path / "model.pt", model, {"task": "classification", "classes": ["CN", "MCI", "AD"], "label": "diagnosis"})
    loaded, meta = load_model(tmp_path / "model.pt")
    _same_weights(model, loaded)
    x = torch.randn(2, 1, 16, 16, 16)
    assert torch.equal(model(x), loaded(x))
    assert meta["n_outputs"] == 3 and meta["classes"] == ["CN", "MCI", "AD"] and meta["dropout"] == 0.2


class _Payload:
    """Pickles as a call that writes a marker file: what a malicious checkpoint does on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, container):
    marker = tmp_path / "marker.txt"
    evil = {"format": ENCODER_FORMAT, "state_dict": {}, "meta": {"arch": _Payload(marker)}}
    path = tmp_path / "encoder.pt"
    if container == "torch_zip":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(CheckpointError, match=r"encoder\.pt: refused"):
        load_encoder(path)
    assert not marker.exists()
    # the file really is armed: an unrestricted unpickler runs the payload
    if container == "torch_zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.read_text() == "pwned"


def test_files_from_before_the_masking_option_read_as_unmasked(tmp_path, encoder):
    """neuro-ssl 0.1 wrote preprocessing without ``mask_background``; it did not mask, and an
    encoder from then must keep seeing what it was trained on."""
    import torch

    from neuro_ssl.data.transforms import PreprocessConfig
    from neuro_ssl.models import load_encoder, save_encoder

    old = {"spacing_mm": [4.0, 4.0, 4.0], "shape": [16, 16, 16], "normalization": "auto", "modalities": ["T1w"]}
    path = save_encoder(tmp_path / "old.pt", encoder, {"preprocess": old})
    _, meta = load_encoder(path)
    assert PreprocessConfig.from_dict(meta["preprocess"]).mask_background is False
    new = save_encoder(tmp_path / "new.pt", encoder, {"preprocess": PreprocessConfig().to_dict()})
    assert PreprocessConfig.from_dict(load_encoder(new)[1]["preprocess"]).mask_background is True
    assert torch.load(path, weights_only=True)["meta"]["preprocess"] == old  # the file itself is untouched
