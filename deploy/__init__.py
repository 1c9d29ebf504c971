"""Deployment artefacts generated from the repository's configs (docs/kubernetes.md)."""
