"""Alerting internals: channel settings, delivery per channel kind, the on-disk queue.

The public interface (AlertSettings, AlertEvent, Alerter) is sdwatch.alerts; the event type
itself lives in sdwatch.alerting.event, which every part imports.
"""
