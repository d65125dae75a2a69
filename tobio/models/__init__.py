"""Model bundles (provider + model + purpose + parameters) and the `models` module."""
