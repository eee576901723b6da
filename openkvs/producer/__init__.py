"""Producing: stream MKV into OpenKVS (or AWS) with PutMedia, surviving reconnects."""

from openkvs.producer.outbox import Summary
from openkvs.producer.producer import Producer, ProducerError
from openkvs.wire.acks import Ack

__all__ = ["Ack", "Producer", "ProducerError", "Summary"]
