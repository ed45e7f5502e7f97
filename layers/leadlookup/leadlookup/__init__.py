"""Shared Lambda layer: read-through cached lead and organization lookups for voice/SMS agents."""
