"""The barebones web UI: a hand-written chat page on tornado, over the same kernel and commands."""
