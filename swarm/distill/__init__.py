"""Distillation: labelled data, the teacher, LoRA training, evaluation, calibration, and
the staged pipeline (``swarm distill``).
"""
