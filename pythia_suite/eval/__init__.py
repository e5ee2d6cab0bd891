"""Scoring primitives shared by the case studies: greedy generation, log-likelihoods, the harness adapter."""
