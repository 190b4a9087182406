"""Provider URLs as shown in logs and errors: credentials masked."""

from __future__ import annotations

from source_workers.transport.urls import masked_url, secret_values


def test_secret_query_values_and_userinfo_are_masked() -> None:
    """apikey, token and user:password never show; other parameters do."""
    url = "wss://user:pw@x.supabase.co/realtime/v1/websocket?apikey=SECRET&vsn=1.0.0&access_token=T"
    shown = masked_url(url)
    assert "SECRET" not in shown and "pw" not in shown and "T&" not in shown + "&"
    assert "vsn=1.0.0" in shown and shown.startswith("wss://x.supabase.co/")
    assert set(secret_values(url)) == {"SECRET", "T", "user:pw"}
