"""Real peers on loopback that stand in for the outside world in tests (no mocks).

Import from the submodules (`from tests.fakes.twilio_server import TwilioServer`); importing them here
would make `python -m tests.fakes.twilio_server` load the module twice.
"""
