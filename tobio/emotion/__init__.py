"""Emotion: affect, appraisal and feedback."""
