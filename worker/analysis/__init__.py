"""Analyzers turn a video into a PoseSequence: mock (synthetic dancers) or real (models)."""
