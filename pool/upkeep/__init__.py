"""The supervisor's periodic upkeep: the scratch reserve, the image cache, the cancel watch."""
