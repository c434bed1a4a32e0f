"""Speakers: voiceprints (d-vectors) used to tell who is talking and to condition the model."""
