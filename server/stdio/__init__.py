"""The stdio transport: JSON-RPC lines on stdin and stdout, bounded and never blocking the event loop."""
