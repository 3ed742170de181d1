"""Tuning methods: the interface, the registry and the built-in methods."""

from boxbench.core.method import Artifact, Method, PromptArtifact, build_params, render_prompt
from boxbench.methods.registry import METHODS, get_method, register_method

__all__ = ["Artifact", "Method", "PromptArtifact", "build_params", "render_prompt", "METHODS", "get_method", "register_method"]
