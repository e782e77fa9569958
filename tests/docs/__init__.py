"""Tests of the documentation site and the package build."""
