"""The barebones web UI: a Panel chat app over the same kernel and commands."""
