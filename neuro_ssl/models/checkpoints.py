"""Saving and loading weights: the only module that touches ``encoder.pt`` / ``model.pt`` / ``decoder.pt``.

A file is a plain dict ``{"format", "state_dict", "meta"}`` written atomically and read with
``torch.load(weights_only=True)``: tensors and plain containers only, so a crafted file cannot
run code on load (a pickle that tries is refused with :class:`CheckpointError`). Keys saved by
DataParallel/DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) are stripped and the
weights are then loaded with ``strict=True``: a file that does not fit the network fails loudly
instead of leaving layers at their random initialisation.

A human-readable sidecar (``encoder.yaml`` beside ``encoder.pt``) repeats the meta.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from neuro_ssl._utils.files import torch_save, write_yaml
from neuro_ssl.errors import CheckpointError, ConfigError

ENCODER_FORMAT = "neuro-ssl-encoder/1"
MODEL_FORMAT = "neuro-ssl-model/1"
DECODER_FORMAT = "neuro-ssl-decoder/1"
_PREFIXES = ("module.", "_orig_mod.")


def plain_meta(obj: Any) -> Any:
    """Meta as plain YAML/``weights_only``-safe values: dicts, lists, str, int, float, bool, None."""
    if isinstance(obj, Mapping):
        return {str(k): plain_meta(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        values = sorted(obj) if isinstance(obj, (set, frozenset)) else obj
        return [plain_meta(v) for v in values]
    if isinstance(obj, (os.PathLike,)):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # numpy / torch scalars
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"checkpoint meta values must be plain data, got {type(obj).__name__}")


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` / ``_orig_mod.`` wrappers that DDP and torch.compile add to keys."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(module, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def read_checkpoint(path: str | os.PathLike, expected_format: str | tuple[str, ...]) -> dict:
    """Load a checkpoint dict safely and check its ``format``; every failure is a CheckpointError.

    A file that is not a PyTorch checkpoint at all (text, empty, a NIfTI image, a zip or gzip of
    something else, a NumPy array, HDF5, safetensors) is named for what it is without being
    unpickled; a zip or pickle goes to ``torch.load(weights_only=True)``, which refuses anything
    beyond tensors and plain containers.
    """
    path = Path(path)
    expected = (expected_format,) if isinstance(expected_format, str) else tuple(expected_format)
    if path.is_dir():
        inside = [n for n in ("encoder.pt", "model.pt", "checkpoint.pt") if (path / n).is_file()]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise CheckpointError(f"{path}: a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    kind = _file_kind(path)
    if kind is not None:
        if kind.startswith(_DAMAGED):
            raise CheckpointError(f"{path}: {kind}; save or copy it again")
        if "neuro-ssl" not in kind:
            kind += ", not a neuro-ssl checkpoint"
        raise CheckpointError(f"{path}: {kind} (expected {' or '.join(expected)})")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused: {_refusal_reason(str(exc))}; only plain weights files are "
                              "loaded (nothing in them is ever executed)") from None
    except Exception as exc:  # noqa: BLE001 - torch's legacy reader fails in many ways on damaged files
        raise CheckpointError(f"{path}: {_DAMAGED} PyTorch file ({type(exc).__name__}: "
                              f"{_short(exc)}); save or copy it again") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt not in expected:
        raise CheckpointError(f"{path}: expected {' or '.join(expected)}, found {_found(data, fmt)}")
    return data


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return text if len(text) <= limit else text[:limit] + "..."


def _found(data: Any, fmt: Any) -> str:
    """What a loaded PyTorch file holds, when it is not the neuro-ssl format asked for."""
    if fmt:
        what = {ENCODER_FORMAT: " (a pretrained encoder.pt)", MODEL_FORMAT: " (a fine-tuned model.pt)"}
        return f"format '{fmt}'{what.get(fmt, '')}"
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return "not a neuro-ssl checkpoint (a bare state_dict of tensors, without the meta neuro-ssl writes)"
    return f"not a neuro-ssl checkpoint (a PyTorch file holding a {type(data).__name__})"


_SNIFF_BYTES = 4096
_DAMAGED = "a truncated or damaged"


def _file_kind(path: Path) -> str | None:
    """What ``path`` is when it cannot be a PyTorch checkpoint (None: a zip or pickle for torch to read)."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path, size)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return None  # a pickle (PyTorch's legacy format): torch.load reads it, weights only
    if head.startswith(b"\x1f\x8b"):
        return _gzip_kind(path)
    return _magic_kind(head) or _text_kind(head) or f"unrecognized binary content ({size} bytes, starting {head[:4].hex(' ')})"


def _zip_kind(path: Path, size: int) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"{_DAMAGED} zip archive ({size} bytes; an interrupted save or copy?)"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return None
    shown = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
    return f"a zip archive of other files ({shown or 'empty'})"


def _gzip_kind(path: Path) -> str:
    import gzip

    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError, ValueError):
        return f"{_DAMAGED} gzip file"
    inner = _magic_kind(head)
    return f"gzip-compressed {inner[inner.index(' ') + 1:] if inner else 'data'}"


def _magic_kind(head: bytes) -> str | None:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "a NIfTI image"
    if len(head) >= 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return "a NIfTI-2 image"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (Keras or h5py weights?)"
    if len(head) > 9 and head[8:10] == b'{"' and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file"
    return None


def _text_kind(head: bytes) -> str | None:
    """A text file (YAML, JSON, CSV, notes), with its first line, or None for binary content."""
    if b"\x00" in head:
        return None
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13) or b == 127)
    if controls > len(head) // 100:
        return None
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > max(2, len(text) // 50):  # mostly not UTF-8: Latin-1 text is still mostly ASCII
        if sum(1 for b in head if b >= 128) > len(head) // 10:
            return None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:60] + "..."
    if "format: neuro-ssl-" in text:
        return f"a text file (first line: {first!r}): the human-readable meta written beside the weights; pass the .pt file"
    return f"a text file (first line: {first!r}), not a neuro-ssl checkpoint"


def _refusal_reason(torch_message: str) -> str:
    """What the file would have made Python import or call, from torch's weights-only refusal."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", torch_message)  # torch colours its message for terminals
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"Unsupported operand (\d+)", text)
    if found and found.group(0).startswith("Unsupported global"):
        return f"unpickling it would import and call {found.group(1)}"
    if found:
        return f"it holds a pickle instruction that weights-only loading forbids (opcode {found.group(1)})"
    return "it holds Python objects beyond tensors and plain containers"


def _load_weights(module: nn.Module, state_dict: Mapping, path: Path) -> None:
    try:
        module.load_state_dict(strip_prefixes(state_dict), strict=True)
    except (RuntimeError, KeyError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path}: weights do not fit the network described by its meta ({detail})") from None


def _encoder_meta(encoder: nn.Module, meta: Mapping | None) -> dict:
    encoder = unwrap(encoder)
    base = {"arch": encoder.arch, "in_channels": encoder.in_channels, "norm": encoder.norm,
            "width": encoder.width, "out_features": encoder.out_features}
    return plain_meta({**base, **dict(meta or {})})


def _save(path: str | os.PathLike, fmt: str, module: nn.Module, meta: dict) -> Path:
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in strip_prefixes(unwrap(module).state_dict()).items()}
    torch_save({"format": fmt, "state_dict": state, "meta": meta}, path)
    write_yaml(path.with_suffix(".yaml"), {"format": fmt, "weights": path.name, **meta})
    return path


def save_encoder(path: str | os.PathLike, encoder: nn.Module, meta: Mapping | None = None) -> Path:
    """Write the encoder's weights and meta (arch, in_channels, norm, width filled in) + ``.yaml`` sidecar."""
    return _save(path, ENCODER_FORMAT, encoder, _encoder_meta(encoder, meta))


def save_model(path: str | os.PathLike, model: nn.Module, meta: Mapping | None = None) -> Path:
    """Write a :class:`SupervisedModel` (encoder + head); meta gains the encoder fields and n_outputs."""
    inner = unwrap(model)
    meta = {**_encoder_meta(inner.encoder, None), "n_outputs": inner.n_outputs, **plain_meta(dict(meta or {}))}
    if isinstance(inner.dropout, nn.Dropout):
        meta.setdefault("dropout", inner.dropout.p)
    return _save(path, MODEL_FORMAT, model, meta)


def _encoder_from_meta(meta: Mapping, path: Path) -> nn.Module:
    from neuro_ssl.models.encoders import build_encoder

    try:
        return build_encoder(arch=meta["arch"], in_channels=int(meta["in_channels"]),
                             norm=meta.get("norm", "batch"), width=float(meta.get("width", 1.0)))
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: meta does not describe an encoder ({' '.join(str(exc).split())})") from None


def _read_meta(data: dict) -> dict:
    """The file's meta; preprocessing written before ``mask_background`` existed (neuro-ssl 0.1)
    did not mask the background, so such a file reads as ``mask_background: false`` and the
    network keeps seeing what it was trained on."""
    meta = dict(data.get("meta") or {})
    if isinstance(meta.get("preprocess"), dict):
        meta["preprocess"] = {"mask_background": False, **meta["preprocess"]}
    return meta


def read_meta(path: str | os.PathLike) -> dict:
    """The meta of an ``encoder.pt`` or ``model.pt`` (safely loaded), without building the network."""
    return _read_meta(read_checkpoint(path, (ENCODER_FORMAT, MODEL_FORMAT)))


def load_encoder(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``(encoder, meta)`` from an ``encoder.pt``; the encoder is on CPU in eval mode."""
    path = Path(path)
    data = read_checkpoint(path, ENCODER_FORMAT)
    meta = _read_meta(data)
    encoder = _encoder_from_meta(meta, path)
    _load_weights(encoder, data["state_dict"], path)
    return encoder.eval(), meta


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``(SupervisedModel, meta)`` from a ``model.pt``; on CPU in eval mode."""
    from neuro_ssl.models.heads import SupervisedModel

    path = Path(path)
    data = read_checkpoint(path, MODEL_FORMAT)
    meta = _read_meta(data)
    encoder = _encoder_from_meta(meta, path)
    head_weight = strip_prefixes(data["state_dict"]).get("head.weight")
    n_outputs = int(meta.get("n_outputs", head_weight.shape[0] if head_weight is not None else 0))
    try:
        model = SupervisedModel(encoder, n_outputs, dropout=float(meta.get("dropout", 0.0)))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: meta does not describe a model ({exc})") from None
    _load_weights(model, data["state_dict"], path)
    return model.eval(), meta


def save_decoder(path: str | os.PathLike, decoder: nn.Module, meta: Mapping | None = None) -> Path:
    """Write a :class:`~neuro_ssl.models.decoders.LatentDecoder` (head, log-variance layer, decoder).

    Meta gains what rebuilds it: ``decoder`` (``Decoder.config()``), ``head`` (in_features, dims)
    and ``variational``.
    """
    inner = unwrap(decoder)
    built = {"decoder": inner.decoder.config(), "variational": inner.variational,
             "head": {"in_features": inner.head.in_features, "dims": list(inner.head.dims)}}
    return _save(path, DECODER_FORMAT, decoder, plain_meta({**dict(meta or {}), **built}))


def load_decoder(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``(LatentDecoder, meta)`` from a ``decoder.pt``; on CPU in eval mode."""
    from neuro_ssl.models.decoders import Decoder, LatentDecoder
    from neuro_ssl.models.heads import ProjectionHead

    path = Path(path)
    data = read_checkpoint(path, DECODER_FORMAT)
    meta = _read_meta(data)
    try:
        head = ProjectionHead(int(meta["head"]["in_features"]), tuple(int(d) for d in meta["head"]["dims"]))
        config = dict(meta["decoder"])
        decoder = Decoder(int(config["latent_dim"]), int(config["out_channels"]), tuple(config["shape"]),
                          float(config["width"]), str(config["norm"]))
        log_var = nn.Linear(head.in_features, decoder.latent_dim) if meta.get("variational") else None
        module = LatentDecoder(head, decoder, log_var)
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: meta does not describe a decoder ({' '.join(str(exc).split())})") from None
    _load_weights(module, data["state_dict"], path)
    return module.eval(), meta
