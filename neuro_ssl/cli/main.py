"""``neuro-ssl COMMAND ...``: dispatch to one module per command, imported only when used.

Every command module defines ``add_arguments(parser)`` and ``run(args) -> int`` and imports
nothing heavy at module level (monai and captum cost seconds), so ``--help`` stays fast.
User mistakes (:class:`~neuro_ssl.errors.NeuroSSLError`) end as one line on stderr and a
non-zero exit, never a traceback; a command that fails leaves its ``--out`` as it found it
(``_common.output_guard``) unless it had written a checkpoint to resume from.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from neuro_ssl import __version__
from neuro_ssl.cli import _common

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("neuro_ssl.cli.synth", "build a synthetic cohort from the MNI152 template (demo and tests)"),
    "manifest": ("neuro_ssl.cli.manifest", "import an ADNI / ClinicaDL / BIDS / CSV export; progression labels"),
    "validate": ("neuro_ssl.cli.validate", "check every row and image of a manifest; exit 1 on errors"),
    "split": ("neuro_ssl.cli.split", "subject-level stratified train/val/test or k-fold splits"),
    "pretrain": ("neuro_ssl.cli.pretrain", "contrastive pretraining (SimCLR, y-Aware, SupCon, MoCo, CLIP, autoencoders)"),
    "federate": ("neuro_ssl.cli.federate", "contrastive pretraining across sites on Flower (FedAvg/FedProx, FedBN)"),
    "finetune": ("neuro_ssl.cli.finetune", "train a classifier or regressor on an encoder (linear, full, scratch)"),
    "evaluate": ("neuro_ssl.cli.evaluate", "metrics with subject-level bootstrap CIs, predictions, plots"),
    "evaluate-retrieval": ("neuro_ssl.cli.evaluate_retrieval",
                           "cross-modal retrieval of a pretraining run: scans <-> clinical data, MRI <-> PET"),
    "embed": ("neuro_ssl.cli.embed", "encoder embeddings, one row per scan"),
    "cluster": ("neuro_ssl.cli.cluster", "k-means on embeddings, ARI/NMI against a column, 2D map"),
    "saliency": ("neuro_ssl.cli.saliency", "Grad-CAM volumes in each scan's own space, summary, HTML review"),
    "audit": ("neuro_ssl.cli.audit", "can trivial summaries (background, edges, intensity, volume) predict the label?"),
    "study": ("neuro_ssl.cli.study", "label-efficiency curves: methods x modes x label budgets x draws, with CIs"),
    "report": ("neuro_ssl.cli.report", "one HTML report of runs made by hand, warnings first"),
    "reconstruct": ("neuro_ssl.cli.reconstruct", "autoencoder reconstructions (and VAE samples) as NIfTI, errors.csv"),
    "demo": ("neuro_ssl.cli.demo", "the whole chain on a synthetic cohort, in minutes on a CPU"),
    "run": ("neuro_ssl.cli.run", "run a pipeline YAML, skipping steps whose outputs are current"),
}


def _top_help() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [
        f"usage: neuro-ssl COMMAND [options]   (neuro-ssl COMMAND --help for each)",
        "",
        "Self-supervised pretraining, honest evaluation and saliency for 3D brain MRI / PET.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {helptext}" for name, (_, helptext) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this message", "  --version   print the version"]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    module_name, helptext = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"neuro-ssl {command}",
        allow_abbrev=False,  # '--work' must not pass for '--workers' (nor break when a flag is added)
        description=(module.__doc__ or helptext).strip(),
        formatter_class=_common.HelpFormatter,
    )
    module.add_arguments(parser)
    _common.add_config_option(parser)
    parser.set_defaults(_run=module.run, _command=command,
                        _keep=tuple(getattr(module, "KEEP_ON_FAILURE", _common.KEEP_ON_FAILURE)))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"neuro-ssl {__version__}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"neuro-ssl: error: unknown command '{command}'{hint}; see neuro-ssl --help", file=sys.stderr)
        return 2
    try:
        parser = build_parser(command)
        args = _common.parse_with_config(parser, argv[1:])
        return _common.run_parsed(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"neuro-ssl {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user errors become one line, bugs keep their traceback
        from neuro_ssl.errors import NeuroSSLError

        if isinstance(exc, NeuroSSLError):
            print(f"neuro-ssl {command}: error: {_common.one_line(exc)}", file=sys.stderr)
            return exc.exit_code
        raise


if __name__ == "__main__":
    raise SystemExit(main())
