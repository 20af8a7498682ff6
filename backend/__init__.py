"""Lift3D backend: the ZeroMQ job server and the headless command line. Never imports bpy."""

__version__ = "0.1.0"
