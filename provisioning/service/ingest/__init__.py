"""Ingestion API (an OAuth resource server): counts, lots, readings, MQTT fan-out."""
