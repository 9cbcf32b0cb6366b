"""Parley: an event-sourced backbone for customer-service messaging on Apache Kafka."""

__version__ = "0.1.0"
