"""The fleet a worker lives in: the instance's metadata (Spot and rebalance notices, the Auto
Scaling lifecycle state), lifecycle hooks and scale-in protection."""
