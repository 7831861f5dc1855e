"""Federated contrastive pretraining across sites, on Flower: each site trains on its own scans.

Every site (a value of --site-column) is a Flower client that runs --local-epochs epochs of the
ordinary pretraining loop on its own rows, starting from the global weights; the server averages
the encoder and projection-head weights by scan count (FedAvg) each round. Only weights and
counts travel: paths, covariates, subject ids and images stay at the sites. --strategy fedprox
adds mu/2 ||w - w_global||^2 to each site's loss; --keep-local-norm keeps normalization layers
at the sites (FedBN). Every round is checkpointed; --resume continues after the last finished
round. A site that fails or disappears is reported and the round goes on while --min-clients
sites answer.

--deployment simulation (default) runs the sites as Ray actors (Flower's simulation);
--deployment processes starts a real flower-superlink and one flower-supernode per site on
127.0.0.1, as sites run it across institutions (TLS with --ssl-certfile/--ssl-keyfile/
--ssl-ca-certfile). Needs Flower: pip install -e '.[federated]'. The pretraining options are
those of 'neuro-ssl pretrain' (without --epochs: a run trains rounds x local epochs; --probe-every
counts rounds). Writes RUN/encoder.pt, RUN/checkpoint.pt, RUN/config.yaml, RUN/metrics.csv (per
round and per site), TensorBoard events, RUN/federation.json; see docs/federated.md.

examples:
  neuro-ssl federate --manifest cohort.csv --site-column site --out runs/fed --rounds 20 --local-epochs 1 \\
      --loss yaware --meta age --sigma 5
  neuro-ssl federate --manifest cohort.csv --out runs/fedbn --rounds 20 --local-epochs 2 --loss simclr \\
      --strategy fedprox --proximal-mu 0.01 --keep-local-norm --min-clients 2 --deployment processes
"""

from __future__ import annotations

import argparse

from neuro_ssl.cli import _common
from neuro_ssl.cli import pretrain as pretrain_cli
from neuro_ssl.errors import ConfigError
from neuro_ssl.federated.config import DEPLOYMENTS, STRATEGIES, FederatedConfig

_DEFAULTS = FederatedConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pretrain_cli.add_arguments(parser)
    parser.set_defaults(epochs=None)
    d = _DEFAULTS
    fed = parser.add_argument_group("federation")
    fed.add_argument("--site-column", default=d.site_column, metavar="COL", help="manifest column naming each scan's site")
    fed.add_argument("--rounds", type=_common.positive_int, default=d.rounds, metavar="R", help="federated rounds")
    fed.add_argument("--local-epochs", type=_common.positive_int, default=d.local_epochs, metavar="E",
                     help="epochs each site trains on its own scans per round")
    fed.add_argument("--strategy", choices=STRATEGIES, default=d.strategy,
                     help="fedavg: mean weighted by scan count; fedprox: fedavg + proximal term at the sites")
    fed.add_argument("--proximal-mu", type=float, default=d.proximal_mu, metavar="MU",
                     help="FedProx: mu in mu/2 ||w - w_global||^2 added to each site's loss")
    fed.add_argument("--keep-local-norm", action="store_true",
                     help="FedBN: normalization layers stay at each site (averaged once, after the last round, "
                          "for RUN/encoder.pt)")
    fed.add_argument("--min-clients", type=_common.positive_int, default=d.min_clients, metavar="N",
                     help="sites that must answer a round for it to count (None: every site)")
    fed.add_argument("--round-timeout", type=_common.positive_float, default=d.round_timeout, metavar="SECONDS",
                     help="how long the server waits for the sites' replies in one round")
    fed.add_argument("--deployment", choices=DEPLOYMENTS, default=d.deployment,
                     help="simulation: Flower's simulation (Ray); processes: flower-superlink + flower-supernodes")
    fed.add_argument("--record-received", action="store_true",
                     help="write everything the server receives under RUN/received/ (audit)")
    for name, what in (("--ssl-certfile", "SuperLink TLS certificate (PEM)"), ("--ssl-keyfile", "its private key"),
                       ("--ssl-ca-certfile", "the CA certificate that signed it (sites verify against it)")):
        fed.add_argument(name, default=None, metavar="PEM", help=f"processes: {what}")


def config_from_args(args: argparse.Namespace) -> FederatedConfig:
    if args.epochs is not None:
        raise ConfigError("--epochs does not apply to federate: a run trains --rounds x --local-epochs epochs")
    if args.checkpoint_every:
        raise ConfigError("--checkpoint-every does not apply to federate: the server checkpoints after every round")
    args.epochs = args.rounds * args.local_epochs
    pretrain = pretrain_cli._config_from_args(args)
    return FederatedConfig(site_column=args.site_column, rounds=args.rounds, local_epochs=args.local_epochs,
                           strategy=args.strategy, proximal_mu=args.proximal_mu, keep_local_norm=args.keep_local_norm,
                           min_clients=args.min_clients, deployment=args.deployment, round_timeout=args.round_timeout,
                           record_received=args.record_received, ssl_certfile=args.ssl_certfile,
                           ssl_keyfile=args.ssl_keyfile, ssl_ca_certfile=args.ssl_ca_certfile,
                           pretrain=pretrain).validate()


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.federated.coordinator import federate

    config = config_from_args(args)
    _common.refuse_same_path(args.manifest, args.out, "--out")
    summary = federate(config, args.manifest, args.out, args.val_manifest, resume=args.resume)
    probe = "".join(f", {k} {summary[k]:.3f}" for k in ("probe_age_mae", "probe_dx_auc") if k in summary)
    failed = f"; {summary['failed_replies']} failed site repl(ies), see metrics.csv" if summary["failed_replies"] else ""
    print(f"federated {summary['rounds']} round(s) x {config.local_epochs} local epoch(s) over "
          f"{len(summary['sites'])} site(s) ({', '.join(summary['sites'])}); final loss "
          f"{summary['final_loss']:.4f} on {summary['n_scans']} scan(s){probe}{failed}")
    print(f"encoder: {summary['encoder']}")
    print(f"run folder: {summary['run_dir']} (checkpoint.pt, config.yaml, metrics.csv, TensorBoard events)")
    return 0
