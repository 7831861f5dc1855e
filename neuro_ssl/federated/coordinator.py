"""``federate``: check the manifest's sites, write the run folder's plan, run the federation, report.

Everything a user can get wrong is refused before RUN is created: a missing site column, rows
without a site, a site with fewer scans than one batch, ``--min-clients`` above the number of
sites, a non-empty RUN without ``--resume``. The coordinator reads the manifest only to find the
sites (and, for the leakage guard, the subjects they hold); each site reads its own rows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from neuro_ssl._utils.files import write_yaml
from neuro_ssl.errors import ConfigError, FederationError, ManifestError, NeuroSSLError, row_context
from neuro_ssl.federated import checkpoint as ckpt
from neuro_ssl.federated.client import SiteSpec
from neuro_ssl.federated.config import FederatedConfig

ERRORS = {cls.__name__: cls for cls in (ConfigError, ManifestError, FederationError)}


def check_flower() -> None:
    if importlib.util.find_spec("flwr") is None:
        raise ConfigError("federate needs Flower: pip install -e '.[federated]' (or: pip install 'flwr[simulation]')")


def plan_sites(df, cfg: FederatedConfig, source: str) -> list[str]:
    """Sorted site names of the manifest; refuses rows without a site and sites smaller than a batch."""
    column = cfg.site_column
    if column not in df.columns:
        import difflib

        names = [str(c) for c in df.columns]
        close = difflib.get_close_matches(column, names, n=1) or [n for n in names if n.lower() == column.lower()]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ManifestError(f"{source}: no site column '{column}' for --site-column ({hint}columns: {', '.join(names)})")
    values = df[column].astype(str).str.strip().where(df[column].notna(), "")
    empty = values.index[values == ""].tolist()
    if empty:
        raise ManifestError(f"{row_context(source, empty[0])}: no value in the site column '{column}' "
                            f"({len(empty)} row(s) without a site); every scan must belong to a site")
    sites = sorted(values.unique())
    small = {s: int((values == s).sum()) for s in sites if (values == s).sum() < cfg.pretrain.batch_size}
    if small:
        site, n = next(iter(small.items()))
        raise ManifestError(f"{source}: site {site} has {n} scan(s), fewer than one batch of {cfg.pretrain.batch_size}; "
                            f"lower --batch-size or leave the site out")
    if cfg.min_clients is not None and int(cfg.min_clients) > len(sites):
        raise ConfigError(f"--min-clients {cfg.min_clients} is more than the {len(sites)} site(s) in {source}")
    return sites


def federate(cfg: FederatedConfig, manifest: Path, out_dir: Path, val_manifest: Path | None = None,
             resume: bool = False) -> dict[str, Any]:
    """Run (or continue) a federated pretraining; returns a summary (rounds, sites, loss, encoder)."""
    from neuro_ssl.data.manifest import read_manifest

    cfg.validate()
    check_flower()
    for name in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certfile"):
        value = getattr(cfg, name)
        if value is not None:
            if not Path(value).is_file():
                raise ConfigError(f"--{name.replace('_', '-')} {value}: no such file")
            setattr(cfg, name, str(Path(value).resolve()))
    manifest, run_dir = Path(manifest).resolve(), Path(out_dir)
    df = read_manifest(manifest)
    sites = plan_sites(df, cfg, str(manifest))
    if run_dir.is_dir() and any(run_dir.iterdir()) and not resume:
        raise ConfigError(f"{run_dir} is not empty: pass --resume to continue the run in it, or choose a new --out")
    if run_dir.is_file():
        raise ConfigError(f"--out {run_dir} is a file; give a folder")
    if resume and (run_dir / ckpt.CHECKPOINT).exists():
        ckpt.load_round(run_dir, cfg)  # same options, or a clear refusal before anything starts
    run_dir.mkdir(parents=True, exist_ok=True)
    sources = {"manifest": str(manifest), **({"val_manifest": str(Path(val_manifest).resolve())} if val_manifest else {})}
    write_yaml(run_dir / "config.yaml", {**cfg.to_dict(), **sources})
    subjects = sorted({str(s) for s in df["subject_id"]}) if "subject_id" in df.columns else []
    ckpt.update_state(run_dir, sites=sites, subjects=subjects, min_clients=cfg.min_clients or len(sites),
                      val_manifest=sources.get("val_manifest"), deployment=cfg.deployment, state="starting", error=None)
    specs = [SiteSpec(i, str(manifest), cfg.site_column, site, str((run_dir / "sites" / _safe(site)).resolve()))
             for i, site in enumerate(sites)]
    _run(cfg, run_dir, specs)
    return _finish(run_dir, cfg)


def _run(cfg: FederatedConfig, run_dir: Path, specs: list[SiteSpec]) -> None:
    from neuro_ssl.federated import deploy

    try:
        if cfg.deployment == "simulation":
            deploy.simulate(run_dir, specs)
        else:
            deploy.LocalFederation(run_dir, specs, cfg).run()
    except NeuroSSLError:
        raise
    except Exception as exc:  # Flower's own failures (e.g. Ray) become one line; the state file keeps the rest
        state = ckpt.read_state(run_dir)
        if state.get("state") != "failed":
            raise FederationError(f"Flower stopped the run: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc


def _finish(run_dir: Path, cfg: FederatedConfig) -> dict[str, Any]:
    state = ckpt.read_state(run_dir)
    if state.get("state") != "finished":
        error = state.get("error") or f"the run ended after round {state.get('round', 0)} of {cfg.rounds} without finishing"
        kind = ERRORS.get(state.get("error_kind"), FederationError)
        where = "" if state.get("error_kind") in ERRORS else f" (see {run_dir / 'federation.json'} and the Flower log)"
        raise kind(f"{error}{where}")
    import pandas as pd

    rows = pd.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else pd.DataFrame()
    last = rows[rows["site"] == "all"].iloc[-1].to_dict() if len(rows) else {}
    failed = rows[rows["status"] == "failed"] if len(rows) else rows
    return {"run_dir": str(run_dir), "encoder": str(run_dir / "encoder.pt"), "rounds": int(state["round"]),
            "sites": state.get("sites", []), "final_loss": float(last.get("loss", float("nan"))),
            "n_scans": int(last.get("n_scans", 0)), "failed_replies": int(len(failed)),
            **{k: float(v) for k, v in last.items() if str(k).startswith("probe_")}}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
