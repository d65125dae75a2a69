"""World Info (lorebooks): entries that enter a persona's prompt when their keys come up in the chat."""
