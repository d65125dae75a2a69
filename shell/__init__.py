"""`tobio-shell`: a Unix-like shell over the Tobio kernel (REPL, subshells, chat, `.tsh` scripts)."""
