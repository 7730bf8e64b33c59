"""Shared ground of AMOS: typed models at every boundary, settings, and the Kubernetes client."""
