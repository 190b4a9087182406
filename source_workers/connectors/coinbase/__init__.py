"""Coinbase Exchange: public trades (``matches``) from the websocket feed, gaps from REST."""
