"""File I/O: video and frame-folder readers, landmark backends, writers."""
