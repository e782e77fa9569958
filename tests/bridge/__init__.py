"""Tests of ibconn.bridge."""
