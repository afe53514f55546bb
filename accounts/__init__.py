"""Accounts: users, roles and their permissions, JWT authentication."""
