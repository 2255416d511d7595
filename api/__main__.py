"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import uvicorn

from core.logs import setup_logging
from core.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    uvicorn.run("api.main:app", host=settings.api_host, port=settings.api_port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
