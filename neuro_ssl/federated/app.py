"""The Flower App components a SuperLink and SuperNodes load (``[tool.flwr.app.components]``).

``server_app`` reads the run folder from the run config (``run-dir``); ``client_app`` reads each
site's data location from its SuperNode's ``--node-config`` (``manifest``, ``site-column``,
``site``, ``state-dir``, ``partition-id``). Imported only by Flower's processes.
"""

from neuro_ssl.federated.client import build_client_app
from neuro_ssl.federated.server import build_server_app

server_app = build_server_app()
client_app = build_client_app()
