"""``python -m neuro_ssl`` (and ``torchrun -m neuro_ssl``) runs the command line."""

from neuro_ssl.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
