"""A third-party package adds a method through the ``boxbench.methods`` entry-point group."""

from __future__ import annotations

from helpers import run_cli

MODULE = '''
from boxbench.core.backend import Access
from boxbench.methods import Method, PromptArtifact


class Shouty(Method):
    name = "shouty"
    access = Access.black
    description = "instruction in capitals (entry-point plugin)"

    def tune(self, view, *, task, train, dev, params, seed):
        return PromptArtifact("CLASSIFY THE TEXT.")
'''


def test_entry_point_method_is_listed_and_checkable(tmp_path):
    (tmp_path / "shouty_pkg.py").write_text(MODULE)
    dist = tmp_path / "shouty_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shouty-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[boxbench.methods]\nshouty = shouty_pkg:Shouty\n")
    env = {"PYTHONPATH": str(tmp_path)}
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "shouty" in listed.stdout and "entry-point plugin" in listed.stdout
    suite = tmp_path / "s.yaml"
    suite.write_text("models: [smollm2-135m]\ndatasets: [sst2]\nmethods: [shouty]\n")
    checked = run_cli("check", str(suite), env=env)
    assert checked.returncode == 0 and "method=shouty" in checked.stdout
