"""Enforce the relay policy exported by relayadmin at SMTP RCPT time, without Django."""
