"""The asyncio shells (the sources from which ``lockheed._sync`` is generated)."""
