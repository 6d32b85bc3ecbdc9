"""The docs' code-example rule: every code block is run by a test or marked as illustration.

The convention, for each literal block of ``docs/*.rst`` and of the README parts they include:

``:class: tested``
    ``tests/test_docs_examples.py`` runs the block (it finds every block so marked, and fails
    for one it has no setup for).  The block also needs a ``:name:``, the test's id for it.
``:class: illustration``
    Shown, never run; the HTML marks it "illustration".

Both are options of ``.. code-block:: LANGUAGE``; a plain ``::`` block takes no option, so it
is written as a ``code-block`` when it shows code.

Blocks in ``text`` are figures, tables and diagrams, not code, and need no mark.  Docstrings
pulled in by autodoc are outside this rule.  A block with neither mark is a build warning,
which ``sphinx-build -W`` turns into a failure, so no example slips in unmarked.
"""

from pathlib import Path

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

MARKS = {"tested", "illustration"}
NOT_CODE = {"text", "none"}


def check_examples(app, doctree):
    root = Path(app.srcdir).resolve().parent
    for block in doctree.findall(nodes.literal_block):
        source = block.source or ""
        if not source.endswith(".rst"):
            continue  # autodoc docstrings ("module.py:docstring of ...")
        if not Path(source).resolve().is_relative_to(root):
            continue
        if block.get("language") in NOT_CODE or MARKS & set(block["classes"]):
            continue
        logger.warning(
            "code block is neither tested nor illustration: add ':class: tested' (and a test in "
            "tests/test_docs_examples.py) or ':class: illustration'",
            location=block, type="examples", subtype="unmarked",
        )


def setup(app):
    app.connect("doctree-read", check_examples)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
