"""How good and how cheap the streaming anomaly detector is: NAB, injected faults, cost."""
