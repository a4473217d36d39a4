"""Every fenced code block of client/python/README.md and client/node/README.md
runs as written, from the repository root, against the real server (its
address replaces 127.0.0.1:50051).

Runs in the virtual environment that tests/clients/run_client_tests.sh builds:
the `sh` blocks install with its pip and run its python; `js` blocks run with
node (client/node's dependencies come from the README's own `npm ci`).
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READMES = ["client/python/README.md", "client/node/README.md"]
RUNNERS = {
    "sh": ["bash", "-euo", "pipefail", "-s"],
    "python": [sys.executable, "-"],
    "js": ["node", "-"],  # stdin resolves require('./client/node') from the cwd
}
# What the blocks print when they work (beyond exiting 0).
EXPECTED = {
    ("client/python/README.md", "python"): ["gqa (1, 8, 4, 64)", "6 (2, 1, 64)",
                                            "gqa.numQHeads: ", "did you mean num_q_heads?",
                                            "NOT_FOUND name: ", "no-such-module"],
    ("client/node/README.md", "js"): ["gqa [ 1, 8, 4, 64 ]", "5 "],
    ("client/python/README.md", "sh"): [" - reference| = "],
    ("client/node/README.md", "sh"): ["attend: variant "],
}


def blocks(readme):
    with open(os.path.join(REPO, readme)) as f:
        text = f.read()
    return [(m.group(1), m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)]


SNIPPETS = [(readme, i, lang, code) for readme in READMES
            for i, (lang, code) in enumerate(blocks(readme))]


def test_each_readme_has_snippets_of_known_languages():
    for readme in READMES:
        langs = [lang for lang, _ in blocks(readme)]
        assert langs, readme
        assert set(langs) <= set(RUNNERS), (readme, langs)


@pytest.mark.parametrize("readme, index, lang, code", SNIPPETS,
                         ids=["%s#%d-%s" % (r, i, lang) for r, i, lang, _ in SNIPPETS])
def test_snippet_runs(server, readme, index, lang, code):
    if sys.prefix == sys.base_prefix:
        pytest.skip("the READMEs install with pip: run in a virtual environment")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    run = subprocess.run(RUNNERS[lang], input=code.replace("127.0.0.1:50051", server.target),
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (run.stdout, run.stderr)
    for expected in EXPECTED.get((readme, lang), []):
        assert expected in run.stdout, run.stdout
