"""The reliability suite: lockheed's public API under injected faults."""
