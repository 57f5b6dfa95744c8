"""The custom-auth recipes the tests use: two bearer-token users, ada and bob,
and the authorization rules (the documented owner-only recipe, `$contains`,
`$or`, `actions=[...]`). Plain langgraph_sdk, no Django: the in-process tests
set them with the CRONSVC_AUTH setting, and a server started on its own loads
one from langgraph.json through a file that imports this module
(`auth = VARIANTS["owner"]()`).
"""

from __future__ import annotations

from langgraph_sdk import Auth

TOKENS = {"token-ada": "ada", "token-bob": "bob"}


def authenticate_with_tokens(auth: Auth) -> None:
    @auth.authenticate
    async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or token not in TOKENS:
            raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
        identity = TOKENS[token]
        return {"identity": identity, "permissions": [f"team:{identity}"], "plan": "pro"}


def owner_auth() -> Auth:
    """The documented owner-only recipe."""
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on
    async def add_owner(ctx: Auth.types.AuthContext, value: dict):
        filters = {"owner": ctx.user.identity}
        metadata = value.setdefault("metadata", {})
        if metadata is None:
            metadata = value["metadata"] = {}
        metadata.update(filters)
        return filters

    return auth


def contains_auth() -> Auth:
    """Owners as a list: $contains."""
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on
    async def members(ctx: Auth.types.AuthContext, value: dict):
        if ctx.action == "create":
            value["metadata"] = {**(value.get("metadata") or {}), "members": [ctx.user.identity]}
        return {"members": {"$contains": ctx.user.identity}}

    return auth


def or_auth() -> Auth:
    """Own or public: $or."""
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on
    async def own_or_public(ctx: Auth.types.AuthContext, value: dict):
        if ctx.action == "create":
            value["metadata"] = {**(value.get("metadata") or {}), "owner": ctx.user.identity}
        return {"$or": [{"owner": ctx.user.identity}, {"public": True}]}

    return auth


def actions_auth() -> Auth:
    """Handlers registered with actions=[...], a deny-all global handler behind them."""
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on
    async def deny(ctx: Auth.types.AuthContext, value: dict):
        return False

    @auth.on(resources=["threads", "assistants", "crons"], actions=["create"])
    async def stamp(ctx: Auth.types.AuthContext, value: dict):
        value["metadata"] = {**(value.get("metadata") or {}), "owner": ctx.user.identity}

    @auth.on(
        resources=["threads", "assistants", "crons"],
        actions=["read", "update", "delete", "search"],
    )
    async def own(ctx: Auth.types.AuthContext, value: dict):
        return {"owner": ctx.user.identity}

    @auth.on.threads.create_run
    async def run_on_own(ctx: Auth.types.AuthContext, value: dict):
        return {"owner": ctx.user.identity}

    return auth


VARIANTS = {
    "owner": owner_auth,
    "contains": contains_auth,
    "or": or_auth,
    "actions": actions_auth,
}
