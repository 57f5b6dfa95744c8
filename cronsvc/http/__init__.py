"""The HTTP plumbing every app's views share.

- `auth`: the API key (authentication class, permission, OpenAPI scheme).
- `middleware`: the body size limit, before anything parses a body.
- `inputs`: body validation, query parameters, shared input serializer fields.
- `outputs`: shared output fields and the error body, for wire serializers.
- `pagination`: search pages and their headers.
- `schema`: OpenAPI helpers (error responses, path ids, event streams).

The exception handler that shapes every error body is `cronsvc.errors`.
"""
