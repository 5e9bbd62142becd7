"""Small MCP servers the tests run as real processes (stdio, or streamable HTTP)."""
