"""The memory module: recursive thread summaries within a token budget, and long-term retrieval."""
