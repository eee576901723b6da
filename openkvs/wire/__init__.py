"""The wire format both sides speak, as pure code (bytes in, events or bytes out; no I/O).

``mkv`` reads and writes EBML/Matroska; ``fragmenter`` cuts a PutMedia body into
fragments; ``chunk`` builds and parses the AWS tags of GetMedia chunks; ``acks``
builds and parses PutMedia ACKs; ``error_ids`` is the table of KVS ErrorIds;
``fragment_number`` is the fragment-number layout. The server and the client
toolkit both import from here, and this package imports neither.
"""
