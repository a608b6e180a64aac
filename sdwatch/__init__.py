"""sdwatch: health checks and resource limits for systemd units, acting through systemd."""

__version__ = "0.1.0"
