"""``FederatedConfig``: the federated options plus the pretraining options each site trains with.

Saved flat as RUN/config.yaml (pretraining keys as in ``neuro-ssl pretrain``, minus ``epochs``,
which is ``rounds x local_epochs`` here), so ``neuro-ssl federate --config RUN/config.yaml``
repeats a run. Plain data only; ``validate()`` raises a one-line ConfigError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from neuro_ssl.errors import ConfigError
from neuro_ssl.training.config import PretrainConfig

STRATEGIES = ("fedavg", "fedprox")
DEPLOYMENTS = ("simulation", "processes")
#: federated options a resumed run may change (they do not alter what a round computes)
RESUMABLE_CHANGES = frozenset({"rounds", "round_timeout", "record_received", "deployment", "ssl_certfile",
                               "ssl_keyfile", "ssl_ca_certfile"})


@dataclass
class FederatedConfig:
    """Federated options (the CLI flags map onto these fields one to one) and the sites' pretraining.

    ``min_clients`` None means every site must answer every round.
    """

    site_column: str = "site"
    rounds: int = 10
    local_epochs: int = 1
    strategy: str = "fedavg"
    proximal_mu: float = 0.0           # FedProx mu (needs --strategy fedprox)
    keep_local_norm: bool = False      # FedBN: normalization layers never leave the sites
    min_clients: int | None = None
    deployment: str = "simulation"     # simulation (Flower + Ray) or processes (SuperLink + SuperNodes)
    round_timeout: float = 43200.0     # seconds the server waits for replies in a round (= Flower message TTL)
    record_received: bool = False      # RUN/received/: everything the server received, for audit
    ssl_certfile: str | None = None    # processes: TLS for the SuperLink (all three, or none)
    ssl_keyfile: str | None = None
    ssl_ca_certfile: str | None = None
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    @property
    def total_epochs(self) -> int:
        return int(self.rounds) * int(self.local_epochs)

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    def site_pretrain(self) -> PretrainConfig:
        """The pretraining config each site runs: ``epochs`` spans the whole run (the LR schedule)."""
        return dataclasses.replace(self.pretrain, epochs=self.total_epochs)

    # ---- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Flat YAML-safe dict: the pretraining keys (without ``epochs``), then the federated ones."""
        out = {k: v for k, v in self.pretrain.to_dict().items() if k != "epochs"}
        for f in dataclasses.fields(self):
            if f.name != "pretrain":
                out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FederatedConfig":
        """Split a flat dict into federated and pretraining options (unknown keys are refused there)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"pretrain"}
        values = {str(k).replace("-", "_"): v for k, v in dict(data).items()}
        own = {k: values.pop(k) for k in list(values) if k in names}
        values.pop("epochs", None)
        return cls(**own, pretrain=PretrainConfig.from_dict(values))

    # ---- checks -----------------------------------------------------------------------------
    def validate(self) -> "FederatedConfig":
        """Raise ConfigError on the first invalid option; returns self."""
        self.site_pretrain().validate()
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'")
        if self.deployment not in DEPLOYMENTS:
            raise ConfigError(f"--deployment must be one of {', '.join(DEPLOYMENTS)}, got '{self.deployment}'")
        for name in ("rounds", "local_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.strategy == "fedprox" and not float(self.proximal_mu) > 0:
            raise ConfigError(f"--strategy fedprox needs --proximal-mu > 0 (e.g. 0.01), got {self.proximal_mu}")
        if self.strategy == "fedavg" and float(self.proximal_mu) != 0:
            raise ConfigError("--proximal-mu is FedProx's term: pass --strategy fedprox with it")
        if self.min_clients is not None and int(self.min_clients) < 1:
            raise ConfigError(f"--min-clients must be >= 1, got {self.min_clients}")
        if not float(self.round_timeout) > 0:
            raise ConfigError(f"--round-timeout must be a positive number of seconds, got {self.round_timeout}")
        if self.pretrain.queue:
            raise ConfigError("--queue is not supported by federate: the MoCo memory and momentum encoder would be "
                              "site state carried across rounds; use a plain contrastive loss")
        tls = [self.ssl_certfile, self.ssl_keyfile, self.ssl_ca_certfile]
        if any(v is not None for v in tls) and not all(v is not None for v in tls):
            raise ConfigError("TLS needs all three of --ssl-certfile, --ssl-keyfile and --ssl-ca-certfile")
        if self.tls and self.deployment != "processes":
            raise ConfigError("--ssl-* certificates secure the SuperLink of --deployment processes; "
                              "the simulation has no network to secure")
        return self
