"""OpenKVS: a self-hosted, wire-compatible Amazon Kinesis Video Streams service."""

__version__ = "0.1.0"
