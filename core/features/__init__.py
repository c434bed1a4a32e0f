"""Feature extractors shared by training and live use (no re-exports: each pulls a heavy library).

- `audio`: openSMILE functionals (`AudioFeatures`: eGeMAPSv02 88-d, ComParE_2016 6373-d)
- `visual`: MediaPipe face blendshapes + head pose (`FaceTracker`, `pool_faces`, `VISUAL_DIM`)
- `text`: sentence embeddings (`TextEmbedder`, all-MiniLM-L6-v2 offline, 384-d)
- `audio_io`: `load_audio` (files and containers -> mono float32 16 kHz) and PCM helpers
- `cache`: `FeatureCache`, an on-disk .npy cache keyed by content hash + extractor version
Voiceprints live in `speakers.voiceprint`.
"""
