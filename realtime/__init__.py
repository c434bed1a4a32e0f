"""mlsan-live real-time pipeline: sources, segmentation, ASR, engine, display, event log."""
