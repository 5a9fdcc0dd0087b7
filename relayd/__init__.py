"""Enforce the relay policy exported by relayadmin at SMTP RCPT time, without Django."""

# The one home of the release number: pyproject.toml, `relayd --version` and the dashboard read it.
__version__ = "0.2.0"
