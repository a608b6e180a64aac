"""Alerting internals: channel settings, delivery per channel kind, the on-disk queue.

The public interface (AlertSettings, AlertEvent, Alerter, journal_excerpt) is sdwatch.alerts.
"""
