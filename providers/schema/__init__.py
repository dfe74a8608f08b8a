"""One typed schema per resource, shared by the program (the stack config) and the
providers (`check`): every bound and default is spelled once, next to its model.

- `fields`: the validators of providers/validate.py as annotated types, and `Model`;
- `host`: the `host` endpoint of every host-level resource, a stack's host, glidepath:ssh;
- one module per resource (`sysctl`, `vif_route_script`, `tunnel`, `routing_table`,
  `policy_rule`, `route`, `mangle_mark`, `vm_placement`, `upstream`): its `...Args`;
- `stack`: the whole stack config and the rules between its entries;
- `errors`: pydantic's errors as (path, reason), the path as a user writes it.

`python -m providers.schema` writes the stack's JSON schema (schema/glidepath-stack.schema.json)
for editors. Importing any of it has no side effects: no host, engine or file is touched.
"""

# The attribute docstrings are the JSON schema's descriptions, and only the schema needs
# them: reading them parses every model's source again, 40 ms in each program and each
# provider process of every `pulumi up` (bench/fixed_cost.py). `python -m providers.schema`
# sets this before it imports a model (`fields.Model` reads it once, at import).
DOCSTRINGS = "GLIDEPATH_SCHEMA_DOCSTRINGS"
