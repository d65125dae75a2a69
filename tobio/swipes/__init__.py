"""Swipes and branches: an agent's reply regenerated, one alternative chosen, the mind following it."""
