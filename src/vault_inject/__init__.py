"""vault-inject: Vault/OpenBao secrets into files and env vars; runs the app, keeps them fresh."""

__version__ = "0.1.0"
