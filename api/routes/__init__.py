"""One module per resource; :func:`register_routes` mounts them all (and only them)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from api.settings import Settings


def all_routers() -> list[APIRouter]:
    """Every router the app serves, public one first (tests walk these for the role matrix)."""
    from api.routes import (
        alerts,
        audit,
        baseline,
        est,
        health,
        inventory,
        pki,
        policy,
        rules,
        session,
        tokens,
    )

    return [
        health.public_router,
        health.router,
        session.router,
        inventory.router,
        alerts.router,
        policy.router,
        baseline.router,
        rules.router,
        tokens.router,
        audit.router,
        pki.router,
        est.router,
    ]


def register_routes(app: FastAPI, settings: Settings) -> None:
    from api.routes import pki, policy

    pki.setup(app, settings)
    policy.setup(app, settings)
    for router in all_routers():
        app.include_router(router)
