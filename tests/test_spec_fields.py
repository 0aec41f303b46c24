"""No dead knobs: every ``ProtocolSpec`` field is read by the code that makes samples or scores them (or by the
run engine that picks the reference policy), or is listed as descriptive-only in the class docstring.

A read is an attribute access ``<x>spec.<field>`` (``spec.crop_border``, ``work.spec.scale``) in that code, or a
``self.<field>`` inside a ``ProtocolSpec`` helper method (``hr_multiple_for``) that the code itself calls.
Printing a field in ``sentence`` is not a read."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from protocols.spec import ProtocolSpec

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILE = ROOT / "protocols" / "spec.py"
# sample making (pipeline, datasets, references), scoring, and the engines that run them
SCORING_CODE = sorted({*(ROOT / "protocols").glob("*.py"), *(ROOT / "bench" / "engines").rglob("*.py")} - {SPEC_FILE})
NOT_READS = {"sentence", "to_dict", "__post_init__"}  # printing, serialising and validating a field use it for nothing


def _is_spec(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id.endswith("spec")
    return isinstance(node, ast.Attribute) and node.attr.endswith("spec")


def spec_reads(sources: list[str]) -> set[str]:
    """Attribute names read as ``<x>spec.<name>`` in the given module sources."""
    return {
        node.attr
        for source in sources
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _is_spec(node.value)
    }


def helper_reads(spec_source: str, called: set[str]) -> set[str]:
    """``self.<field>`` reads inside the ``ProtocolSpec`` methods named in ``called`` (minus ``NOT_READS``)."""
    tree = ast.parse(spec_source)
    spec_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ProtocolSpec")
    reads = set()
    for method in spec_class.body:
        if isinstance(method, ast.FunctionDef) and method.name in called - NOT_READS:
            reads |= {
                node.attr
                for node in ast.walk(method)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
            }
    return reads


def descriptive_fields() -> set[str]:
    """The fields the class docstring lists after "Descriptive only"."""
    match = re.search(r"Descriptive only[^:]*:([^.]*)\.", ProtocolSpec.__doc__ or "")
    assert match, "ProtocolSpec's docstring lists no descriptive-only fields"
    return set(re.findall(r"``(\w+)``", match.group(1)))


def test_every_spec_field_is_read_by_scoring_or_sample_code_or_descriptive() -> None:
    field_names = {f.name for f in dataclasses.fields(ProtocolSpec)}
    reads = spec_reads([path.read_text() for path in SCORING_CODE])
    reads |= helper_reads(SPEC_FILE.read_text(), reads)
    descriptive = descriptive_fields()
    assert descriptive <= field_names, descriptive - field_names
    assert field_names - reads - descriptive == set()


def test_the_scan_finds_an_unread_field_and_ignores_sentence() -> None:
    """The scanner itself: a field only printed in ``sentence`` is unread; one read through a called helper is read."""
    spec_source = '''
class ProtocolSpec:
    def sentence(self):
        return f"{self.printed_only}"

    def helper_for(self, dataset):
        return self.via_helper
'''
    reads = spec_reads(["def score(spec, work):\n    return spec.direct + work.spec.nested + spec.helper_for('x')\n"])
    assert reads == {"direct", "nested", "helper_for"}
    assert helper_reads(spec_source, reads) == {"via_helper"}
    assert "printed_only" not in reads | helper_reads(spec_source, reads | {"sentence"})
