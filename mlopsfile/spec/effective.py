"""The effective specs as YAML: what a plan is made from, after any environment overlay."""

from __future__ import annotations

import yaml

from mlopsfile.spec.documents import LocatedDocument
from mlopsfile.spec.specset import SpecSet


def effective_yaml(specset: SpecSet) -> str:
    """Every document as written (defaults left out), each headed by where it came from."""
    documents: list[LocatedDocument] = [*specset.models.values(), *specset.deployments.values(),
                                        *specset.monitors.values()]
    parts = []
    for located in documents:
        source = f"# {located.at()}"
        if located.patches:
            source += f", patched by {', '.join(located.patches)}"
        body = yaml.safe_dump(located.document.model_dump(mode="json", exclude_unset=True), sort_keys=False)
        parts.append(f"{source}\n{body}")
    return "---\n".join(parts)
