"""The Supabase resources, one per example table."""
