"""The sync shells; most are generated from ``lockheed._async`` by scripts/unasync.py."""
