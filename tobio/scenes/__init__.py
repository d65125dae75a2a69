"""Turn-taking floors and multi-agent scenes."""
