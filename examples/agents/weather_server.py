"""A minimal MCP weather server (official ``mcp`` SDK) for the example Tool in weather.yaml.

corral spawns it over stdio and injects ``WEATHER_API_KEY`` from the ``weather-api`` Secret.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("weather")


@server.tool()
def get_weather(city: str) -> str:
    """Current weather for a city."""
    configured = "with" if os.environ.get("WEATHER_API_KEY") else "without"
    return f"It is sunny in {city} (answered {configured} an API key)."


@server.tool()
def set_alert(city: str, threshold_celsius: float) -> str:
    """Alert when the temperature in a city passes a threshold (a write: needs approval)."""
    return f"alert set for {city} above {threshold_celsius} C"


if __name__ == "__main__":
    server.run("stdio")
