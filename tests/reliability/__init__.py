"""Reliability and security tests: faults, restarts, outages, hostile input, secrets."""
