"""No Django models: the store's tables are LangGraph's (store.backend). The
module exists so `migrate` sends this app post_migrate (store.apps)."""
