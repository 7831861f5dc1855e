"""What every command shares: ``--config`` YAML (flags win), typed option parsers, progress, seeds."""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from neuro_ssl.errors import ConfigError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` that tells the truth: every option that takes a value ends with its real default,
    written the way the option is typed (``--spacing ... (default: 2,2,2)``, not a Python tuple);
    on/off flags say what they do and show no default (a ``store_false`` flag's default of True is
    the behaviour it turns off, not its value). The docstring's line breaks are kept."""

    def _format_action(self, action: argparse.Action) -> str:
        text = option_help(action)
        if text != (action.help or "") and action.help is not argparse.SUPPRESS:
            action = copy.copy(action)
            # argparse %-formats help: escape a bare %, once (a help text may already say %%)
            action.help = text if "%(" in text else text.replace("%%", "%").replace("%", "%%")
        return super()._format_action(action)


def option_help(action: argparse.Action) -> str:
    """One option's help as ``--help`` prints it: its text, then ``(default: VALUE)`` where that says
    something (options that take a value, are optional and whose text names no default)."""
    text = " ".join((action.help or "").split()) if action.help is not argparse.SUPPRESS else ""
    takes_value = action.nargs != 0 and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
    if not action.option_strings or not takes_value or action.required or action.default is argparse.SUPPRESS:
        return text
    if "default" in text.lower():
        return text
    return f"{text} (default: {format_default(action.default)})".strip()


def format_default(value: Any) -> str:
    """A default as a user types it: ``(2.0, 2.0, 2.0)`` -> ``2,2,2``, ``None``/empty -> ``none``."""
    if value is None or (isinstance(value, (tuple, list, dict, set)) and not value):
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(format_default(v) for v in value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_default(v)}" for k, v in value.items()) + "}"
    return str(value)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` to ``parser`` and to every sub-command parser below it."""
    parser.add_argument(
        "--config", type=Path, default=None, metavar="YAML",
        help="read options from a YAML mapping (keys as the long flags, - or _); flags on the command line win",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_config_option(sub)


def load_config(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())  # plain data only: no tags, no code
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; values from ``--config`` fill in what the command line leaves out."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        config = load_config(known.config)
        leaf = _chosen_subparser(parser, argv)
        actions = {a.dest: a for a in leaf._actions if a.dest not in ("help", "config")}
        defaults = {}
        for key, value in config.items():
            dest = str(key).replace("-", "_")
            if dest not in actions:
                import difflib

                close = difflib.get_close_matches(dest, actions, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"{known.config}: unknown option '{key}'{hint}")
            action = actions[dest]
            if isinstance(value, list) and action.nargs is None and action.type is not None:
                value = ",".join(str(v) for v in value)
            if isinstance(value, str) and action.type is not None and not isinstance(action, argparse._StoreTrueAction):
                try:
                    value = action.type(value)
                except (argparse.ArgumentTypeError, ValueError) as exc:
                    raise ConfigError(f"{known.config}: option '{key}': {one_line(exc)}") from None
            defaults[dest] = value
            action.required = False
        leaf.set_defaults(**defaults)
    return parser.parse_args(argv)


def _chosen_subparser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The deepest sub-command parser named in ``argv`` (``manifest import adni`` -> the adni parser)."""
    current = parser
    while True:
        subactions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subactions:
            return current
        chosen = next((tok for tok in argv if tok in subactions[0].choices), None)
        if chosen is None:
            return current
        current = subactions[0].choices[chosen]


# ----- typed option parsers (argparse ``type=``): errors become one usage line -----

def int_tuple(n: int | None = None):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
        if n is not None and len(values) not in (1, n):
            raise argparse.ArgumentTypeError(f"expected 1 or {n} integers, got {text!r}")
        if any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
        return values * n if (n is not None and len(values) == 1) else values
    parse.__name__ = "integers"
    return parse


def float_tuple(n: int | None = None):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in str(text).split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
        if n is not None and len(values) not in (1, n):
            raise argparse.ArgumentTypeError(f"expected 1 or {n} numbers, got {text!r}")
        if any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
        return values * n if (n is not None and len(values) == 1) else values
    parse.__name__ = "numbers"
    return parse


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in str(text).split(",") if v.strip())


def class_list(text: str) -> tuple[str, ...]:
    """``--classes``: two or more class names, comma-separated (one class is not a classification)."""
    classes = str_list(text)
    if len(classes) < 2:
        raise argparse.ArgumentTypeError(f"needs two or more classes, comma-separated (e.g. CN,AD), got {text!r}")
    return classes


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    parser.add_argument("--seed", type=int, default=default, help="random seed (same seed, same result on CPU)")


def add_preprocess_arguments(group, spacing_mm=(2.0, 2.0, 2.0), shape=(96, 112, 96), normalization="auto",
                             modalities=("T1w",), mask_background: bool = True) -> None:
    """The preprocessing options, spelled as ``pretrain`` spells them (``--spacing --shape
    --normalization --modalities --no-mask-background``), with the given defaults."""
    group.add_argument("--spacing", dest="spacing_mm", type=float_tuple(3), default=tuple(spacing_mm), metavar="MM",
                       help="voxel size in mm (1 or 3 numbers)")
    group.add_argument("--shape", type=int_tuple(3), default=tuple(shape), metavar="X,Y,Z", help="model grid in voxels")
    group.add_argument("--normalization", default=normalization, help="auto|zscore|percentile|suvr|none")
    group.add_argument("--modalities", type=str_list, default=tuple(modalities), help="input channels, one per modality")
    group.add_argument("--no-mask-background", dest="mask_background", action="store_false", default=mask_background,
                       help="keep the background as normalization leaves it (neuro-ssl 0.1 behaviour) instead of "
                            "setting every voxel outside the brain mask to 0; for comparisons only (see neuro-ssl audit)")


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="preprocessing cache folder (default: $NEURO_SSL_CACHE or ~/.cache/neuro-ssl); 'none' disables",
    )


def add_frames(parser: argparse.ArgumentParser, default: str = "single") -> None:
    parser.add_argument(
        "--frames", choices=("single", "mean"), default=default,
        help="a 4D file with several volumes (dynamic PET): single refuses it, mean averages its frames "
             "(unweighted: frames of equal length, as ADNI's 5-minute frames)",
    )


def progress(iterable: Iterable | None = None, **kwargs):
    """Progress on stderr: a tqdm bar in a terminal, a line per 10 % or per minute in a log
    (``neuro_ssl._utils.progress``); quiet when NEURO_SSL_QUIET=1."""
    from neuro_ssl._utils.progress import progress as _progress

    return _progress(iterable, **kwargs)


#: names under a command's --out that mean it has done work a rerun continues (kept after a failure);
#: a command module may set its own ``KEEP_ON_FAILURE`` (fnmatch patterns of file or folder names)
KEEP_ON_FAILURE = ("checkpoint.pt",)


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed command; if it fails, its ``--out`` is left as it was before (see :func:`output_guard`)."""
    out = getattr(args, "out", None)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 owns the output
    with output_guard(Path(out) if out is not None and main_rank else None,
                      getattr(args, "_keep", KEEP_ON_FAILURE)):
        return int(args._run(args) or 0)


@contextlib.contextmanager
def output_guard(out: Path | None, keep: Sequence[str] = KEEP_ON_FAILURE) -> Iterator[None]:
    """A command that fails leaves no output behind unless it got as far as resumable work.

    On any exception (a user error, a bug, Ctrl-C): a path that did not exist before is removed
    again, and a folder that existed empty is emptied again, unless something under it matches
    ``keep`` (a training checkpoint: the run continues with --resume). A file or a folder that
    already held something is never touched: commands check their inputs before writing there.
    """
    existed = out is not None and (out.exists() or out.is_symlink())
    was_empty_dir = existed and out.is_dir() and not any(out.iterdir())
    try:
        yield
    except BaseException:
        if out is not None and (not existed or was_empty_dir) and not _has_progress(out, keep):
            _remove_new(out, keep_folder=was_empty_dir)
        raise


def _has_progress(out: Path, keep: Sequence[str]) -> bool:
    import fnmatch

    if not out.is_dir():
        return False
    return any(fnmatch.fnmatch(p.name, pattern) for p in out.rglob("*") for pattern in keep)


def _remove_new(out: Path, keep_folder: bool) -> None:
    import shutil

    if out.is_symlink() or out.is_file():
        out.unlink(missing_ok=True)
        return
    if not out.is_dir():
        return
    if not keep_folder:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in list(out.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def refuse_same_path(inp: Path, out: Path, what: str = "--out") -> None:
    if Path(inp).resolve() == Path(out).resolve():
        raise ConfigError(f"{what} {out} is the input itself; choose another path")


def one_line(exc: BaseException) -> str:
    """The message on one line; an error re-raised from a DataLoader worker loses torch's traceback."""
    text = str(exc)
    if "Original Traceback" in text:  # torch wraps worker errors as "Caught X in DataLoader worker..."
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
        match = re.match(r"^\s*[\w.]+: (.*)$", last)  # "neuro_ssl.errors.ImageError: message"
        text = match.group(1) if match else last
    return " ".join(text.split()) or type(exc).__name__
