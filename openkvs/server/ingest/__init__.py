"""PutMedia: a producer's MKV in, ACKs out, fragments handed to the stream's runtime."""
