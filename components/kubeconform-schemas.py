"""Kubernetes' own OpenAPI v3 spec as the JSON schemas kubeconform reads (components/build.sh).

    python3 components/kubeconform-schemas.py SPEC_DIR VERSION OUT_DIR

SPEC_DIR is api/openapi-spec/v3 of the pinned k8s.io/kubernetes module. For every kind the
API serves (x-kubernetes-group-version-kind), this writes OUT_DIR/v<VERSION>-standalone/ and
OUT_DIR/v<VERSION>-standalone-strict/<kind><kind suffix>.json, kubeconform's layout
(pkg/registry: "deployment-apps-v1.json", "configmap-v1.json"). Each file stands alone: the
kind's schema at the root and every schema it references, transitively, under "definitions"
(references stay references, so recursive types need no unrolling). The strict variant closes
every object that lists its properties (additionalProperties: false), which is what
`kubeconform -strict` relies on to reject a field the API does not have.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PREFIX = "#/components/schemas/"


def load_schemas(spec_dir: Path) -> dict[str, dict]:
    schemas: dict[str, dict] = {}
    for spec in sorted(spec_dir.glob("*_openapi.json")):
        schemas.update(json.loads(spec.read_text()).get("components", {}).get("schemas", {}))
    if not schemas:
        raise SystemExit(f"no OpenAPI v3 schemas under {spec_dir}")
    return schemas


def convert(node: object, strict: bool, refs: set[str]) -> object:
    """One OpenAPI v3 node as draft-4 JSON schema; collects the names it references."""
    if isinstance(node, list):
        return [convert(item, strict, refs) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if key == "$ref":
            name = value.removeprefix(PREFIX)
            refs.add(name)
            out[key] = f"#/definitions/{name}"
        elif key in ("description", "example") or key.startswith("x-"):
            continue  # documentation and Kubernetes' extensions: no constraint for a validator
        elif key == "format" and value == "int-or-string":
            continue  # not a JSON-schema format; the oneOf beside it says integer or string
        elif key in ("properties", "patternProperties"):
            out[key] = {name: convert(sub, strict, refs) for name, sub in value.items()}
        else:
            out[key] = convert(value, strict, refs)
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def standalone(name: str, schemas: dict[str, dict], strict: bool) -> dict:
    refs: set[str] = set()
    root = convert(schemas[name], strict, refs)
    definitions: dict[str, object] = {}
    pending = sorted(refs)
    while pending:
        ref = pending.pop()
        if ref in definitions:
            continue
        more: set[str] = set()
        definitions[ref] = convert(schemas[ref], strict, more)
        pending.extend(sorted(more - definitions.keys()))
    root["definitions"] = dict(sorted(definitions.items()))
    return root


def file_name(group: str, version: str, kind: str) -> str:
    """kubeconform's name for a kind's schema (its pkg/registry schemaPath)."""
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def main(spec_dir: str, version: str, out_dir: str) -> None:
    schemas = load_schemas(Path(spec_dir))
    written = 0
    for strict, suffix in ((False, ""), (True, "-strict")):
        target = Path(out_dir) / f"v{version.removeprefix('v')}-standalone{suffix}"
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(schemas):
            for gvk in schemas[name].get("x-kubernetes-group-version-kind", []):
                path = target / file_name(gvk["group"], gvk["version"], gvk["kind"])
                if path.exists():  # the first group wins a shared short name (none do today)
                    continue
                path.write_text(json.dumps(standalone(name, schemas, strict), sort_keys=True))
                written += 1
    print(f"kubeconform-schemas: {written} schemas for Kubernetes {version} in {out_dir}",
          file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
