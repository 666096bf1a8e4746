"""Generators of the sample captures in pcaps/: real protocol stacks on loopback, recorded with tcpdump."""
