"""A real MCP client (PyPI `mcp`) against the spoke's /mcp endpoint.

Usage: mcp_client.py URL TOKEN. Lists the tools and calls search, ask and
evaluate with the bearer token; prints what came back as JSON.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def text_of(result):
    return {
        "is_error": bool(result.isError),
        "text": "".join(c.text for c in result.content if getattr(c, "type", "") == "text"),
    }


async def main(url, token):
    headers = {"Authorization": f"Bearer {token}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            search = await session.call_tool("search", {"query": "salicylic acid"})
            ask = await session.call_tool("ask", {"question": "Hydra Serum preservatives"})
            evaluate = await session.call_tool("evaluate", {"products": ["hydra-serum"]})
            print(json.dumps({
                "tools": [t.name for t in tools.tools],
                "search": text_of(search),
                "ask": text_of(ask),
                "evaluate": text_of(evaluate),
            }))


asyncio.run(main(sys.argv[1], sys.argv[2]))
