"""Producing: stream MKV into OpenKVS (or AWS) with PutMedia, surviving reconnects."""

from openkvs.producer.acks import Ack
from openkvs.producer.outbox import Summary
from openkvs.producer.producer import Producer, ProducerError

__all__ = ["Ack", "Producer", "ProducerError", "Summary"]
