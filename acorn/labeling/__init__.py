"""Labeling: the backend contract (base), its backends (oracle, labelstudio), and the export of
finished annotations as YOLO labels (export). ``backends.get_backend`` picks one from params."""
