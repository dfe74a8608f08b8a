"""`make demo`: glidepath's main job on the lab."""
