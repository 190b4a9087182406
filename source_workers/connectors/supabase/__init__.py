"""Supabase Realtime: ``postgres_changes`` of configured tables, over Phoenix channels."""
