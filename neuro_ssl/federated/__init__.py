"""Federated contrastive pretraining across sites, on Flower (``pip install -e '.[federated]'``).

Each site is a Flower client that runs the ordinary pretraining loop on its own rows; the server
averages the encoder and projection-head weights. Modules: ``config`` (options), ``params``
(which tensors travel; FedBN), ``client`` (the site: ClientApp), ``server`` (rounds, FedAvg /
FedProx, failures, checkpoints: ServerApp), ``checkpoint`` (round checkpoints, RUN/encoder.pt),
``received`` (audit of what the server received), ``deploy`` (Flower's simulation, or real
SuperLink + SuperNode processes), ``coordinator`` (``federate``, behind ``neuro-ssl federate``).
Importing this package imports neither torch nor Flower.
"""
